// Headless Chromium (Debian's /usr/bin/chromium driven by playwright-core) against the
// chat page served by `ws-server --mode chat`: two pages, messages typed in one show up in both.
//
// Environment:
//   CHROMIUM_PATH         default /usr/bin/chromium (never downloaded)
//   WS_BROWSER_RUNTIMES   runtimes to test (default: WS_RUNTIMES, else all four)
//   WS_BIN_DIR, WS_ARTIFACTS_DIR  as in lib.mjs
// Screenshots: artifacts/screenshots/chat-a.png, chat-b.png (tokio), chat-{a,b}-<runtime>.png (others),
// chat-reconnected.png (the page after the server restarted).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ALL_RUNTIMES, artifactsDir, makeTestCa, startServer } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT = 15000;
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // belt and braces: no name resolves except loopback, so nothing can leave the machine
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
];

const browserRuntimes = (process.env.WS_BROWSER_RUNTIMES || process.env.WS_RUNTIMES || ALL_RUNTIMES.join(' '))
  .split(/[\s,]+/)
  .filter(Boolean);

function isLoopback(url) {
  try {
    const u = new URL(url);
    return ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) || ['data:', 'about:', 'blob:'].includes(u.protocol);
  } catch {
    return false;
  }
}

async function waitConnected(page, name) {
  try {
    await page.waitForFunction(
      () => (document.querySelector('#status')?.textContent || '').trim().toLowerCase() === 'connected',
      null,
      { timeout: TIMEOUT, polling: 100 },
    );
  } catch (e) {
    const st = await page.locator('#status').textContent().catch(() => '<no #status>');
    throw new Error(`page ${name}: #status never read "connected" (it reads ${JSON.stringify(st)}): ${e.message}`);
  }
}

async function waitMessage(page, name, text) {
  try {
    await page.waitForFunction(
      (t) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent.includes(t)),
      text,
      { timeout: TIMEOUT, polling: 100 },
    );
  } catch (e) {
    const items = await page.locator('#messages li').allTextContents().catch(() => []);
    throw new Error(`page ${name}: ${JSON.stringify(text)} not in #messages ${JSON.stringify(items)}: ${e.message}`);
  }
}

for (const runtime of browserRuntimes) {
  describe(`chromium chat page [${runtime}]`, () => {
    let server;
    let context;
    let profile;
    const problems = [];

    before(async () => {
      assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing (apt-get install chromium)`);
      server = await startServer('chat', runtime);
      profile = mkdtempSync(path.join(os.tmpdir(), 'ws-chromium-profile-'));
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ARGS,
        timeout: 30000,
        viewport: { width: 800, height: 600 },
      });
      context.setDefaultTimeout(TIMEOUT);
      // Only loopback traffic: abort any other request.
      await context.route('**/*', (route) =>
        isLoopback(route.request().url()) ? route.continue() : (problems.push(`blocked ${route.request().url()}`), route.abort()),
      );
    });

    after(async () => {
      await context?.close().catch(() => {});
      if (profile) rmSync(profile, { recursive: true, force: true });
      await server?.stop();
    });

    it('two pages exchange messages through the chat server', { timeout: 120000 }, async () => {
      const pageA = context.pages()[0] ?? (await context.newPage());
      const pageB = await context.newPage();
      for (const [name, page] of [['A', pageA], ['B', pageB]]) {
        page.on('pageerror', (err) => problems.push(`page ${name} error: ${err.message}`));
        page.on('console', (msg) => {
          if (msg.type() === 'error') problems.push(`page ${name} console: ${msg.text()}`);
        });
      }

      for (const [name, page] of [['A', pageA], ['B', pageB]]) {
        const resp = await page.goto(`${server.http}/`, { waitUntil: 'load', timeout: TIMEOUT });
        assert.equal(resp?.status(), 200, `page ${name}: GET / status`);
      }
      await waitConnected(pageA, 'A');
      await waitConnected(pageB, 'B');

      // 1) keyboard: type into A's #input, press Enter
      const first = `hello from A via Enter ${runtime} ✓`;
      await pageA.locator('#input').click();
      await pageA.keyboard.type(first);
      await pageA.keyboard.press('Enter');
      await waitMessage(pageA, 'A', first);
      await waitMessage(pageB, 'B', first);

      // 2) button: fill B's #input and click #send
      const second = `second message via #send 中文 ${runtime}`;
      await pageB.locator('#input').fill(second);
      await pageB.locator('#send').click();
      await waitMessage(pageA, 'A', second);
      await waitMessage(pageB, 'B', second);

      // 3) and once more from A by clicking
      const third = `third from A via click 😀 ${runtime}`;
      await pageA.locator('#input').fill(third);
      await pageA.locator('#send').click();
      await waitMessage(pageA, 'A', third);
      await waitMessage(pageB, 'B', third);

      const shots = artifactsDir('screenshots');
      const suffix = runtime === 'tokio' ? '' : `-${runtime}`;
      await pageA.screenshot({ path: path.join(shots, `chat-a${suffix}.png`), fullPage: true });
      await pageB.screenshot({ path: path.join(shots, `chat-b${suffix}.png`), fullPage: true });

      // both pages saw the messages in the same order
      const a = await pageA.locator('#messages li').allTextContents();
      const b = await pageB.locator('#messages li').allTextContents();
      const order = (items) => [first, second, third].map((t) => items.findIndex((x) => x.includes(t)));
      assert.deepEqual(order(a), [...order(a)].sort((x, y) => x - y), `order in A: ${JSON.stringify(a)}`);
      assert.deepEqual(order(b), [...order(b)].sort((x, y) => x - y), `order in B: ${JSON.stringify(b)}`);

      assert.deepEqual(problems, [], 'page errors / blocked requests');
      assert.ok(server.alive(), `ws-server died, see ${server.logPath}`);
    });

    it('rooms: a message reaches its room only; joining another room from the field', { timeout: 120000 }, async () => {
      const red = await context.newPage();
      const blue = await context.newPage();
      const lobby = await context.newPage();
      for (const [name, page] of [['red', red], ['blue', blue], ['lobby', lobby]]) {
        page.on('pageerror', (err) => problems.push(`page ${name} error: ${err.message}`));
      }
      await red.goto(`${server.http}/?room=red`, { waitUntil: 'load', timeout: TIMEOUT });
      await blue.goto(`${server.http}/?room=blue%20room`, { waitUntil: 'load', timeout: TIMEOUT });
      await lobby.goto(`${server.http}/`, { waitUntil: 'load', timeout: TIMEOUT });
      assert.equal(await blue.locator('#room').inputValue(), 'blue room', 'the room field shows the query');
      for (const [name, page] of [['red', red], ['blue', blue], ['lobby', lobby]]) await waitConnected(page, name);

      const inRed = `only for red ${runtime}`;
      await red.locator('#input').fill(inRed);
      await red.locator('#send').click();
      await waitMessage(red, 'red', inRed);
      const inLobby = `only for the lobby ${runtime}`;
      await lobby.locator('#input').fill(inLobby);
      await lobby.locator('#send').click();
      await waitMessage(lobby, 'lobby', inLobby);
      // blue hears its own message, and neither of the others'
      const inBlue = `only for blue ${runtime}`;
      await blue.locator('#input').fill(inBlue);
      await blue.locator('#send').click();
      await waitMessage(blue, 'blue', inBlue);
      const seen = async (page) => (await page.locator('#messages li').allTextContents()).join('\n');
      assert.ok(!(await seen(blue)).includes(inRed) && !(await seen(blue)).includes(inLobby), `blue: ${await seen(blue)}`);
      assert.ok(!(await seen(red)).includes(inBlue) && !(await seen(red)).includes(inLobby), `red: ${await seen(red)}`);
      assert.ok(!(await seen(lobby)).includes(inRed) && !(await seen(lobby)).includes(inBlue), `lobby: ${await seen(lobby)}`);

      // the lobby page joins red through the field, then hears red
      await lobby.locator('#room').fill('red');
      await lobby.locator('#join').click();
      await waitConnected(lobby, 'lobby→red');
      const again = `red again ${runtime}`;
      // the join may still be in flight on the server: retry until the lobby page hears it
      const deadline = Date.now() + TIMEOUT;
      for (;;) {
        await red.locator('#input').fill(again);
        await red.locator('#send').click();
        try {
          await lobby.waitForFunction(
            (t) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent.includes(t)),
            again,
            { timeout: 1000, polling: 100 },
          );
          break;
        } catch (e) {
          if (Date.now() > deadline) throw new Error(`the page that joined red never heard it: ${e.message}`);
        }
      }
      assert.ok(!(await seen(blue)).includes(again), 'blue never hears red');
      assert.deepEqual(problems, [], 'page errors / blocked requests');
      await Promise.all([red.close(), blue.close(), lobby.close()]);
    });
  });
}

// The page's client count (GET /clients, polled) and its reconnecting: the count follows pages
// that come and go; when the server stops, the page retries with growing delays, and once a
// server is back on the same port it reconnects by itself and chats again. One runtime: the page's
// behaviour does not depend on the server's.
describe('chromium chat page: client count and reconnecting with backoff', () => {
  it('counts the connected pages, retries with growing delays, and reconnects after a restart', { timeout: 120000 }, async () => {
    const runtime = browserRuntimes[0];
    let server = await startServer('chat', runtime);
    const port = server.port;
    const profile = mkdtempSync(path.join(os.tmpdir(), 'ws-chromium-profile-'));
    const problems = [];
    let context;
    try {
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ARGS,
        timeout: 30000,
        viewport: { width: 800, height: 600 },
      });
      context.setDefaultTimeout(TIMEOUT);
      await context.route('**/*', (route) =>
        isLoopback(route.request().url()) ? route.continue() : (problems.push(`blocked ${route.request().url()}`), route.abort()),
      );
      const count = (page, n) =>
        page.waitForFunction((want) => document.querySelector('#clients')?.dataset.count === String(want), n, {
          timeout: TIMEOUT,
          polling: 100,
        });
      const a = context.pages()[0] ?? (await context.newPage());
      a.on('pageerror', (err) => problems.push(`page A error: ${err.message}`));
      await a.goto(`${server.http}/`, { waitUntil: 'load', timeout: TIMEOUT });
      await waitConnected(a, 'A');
      await count(a, 1);
      assert.match(await a.locator('#clients').textContent(), /^1 client connected$/);
      const b = await context.newPage();
      b.on('pageerror', (err) => problems.push(`page B error: ${err.message}`));
      await b.goto(`${server.http}/`, { waitUntil: 'load', timeout: TIMEOUT });
      await waitConnected(b, 'B');
      await count(a, 2); // A hears of B within a polling period
      await b.close();
      await count(a, 1);

      // The server goes away: A shows it, and retries with growing delays.
      await server.stop();
      await a.waitForFunction(() => (document.querySelector('#status')?.dataset.retries || '').split(',').length >= 3, null, {
        timeout: TIMEOUT,
        polling: 100,
      });
      assert.equal((await a.locator('#status').textContent()).trim(), 'disconnected');
      assert.equal(await a.locator('#clients').getAttribute('data-count'), '', 'no count while disconnected');
      const delays = (await a.locator('#status').getAttribute('data-retries')).split(',').map(Number);
      for (let i = 1; i < delays.length; i++) {
        assert.ok(delays[i] > delays[i - 1], `each retry waits longer: ${delays}`);
      }
      assert.ok(delays[0] >= 400 && delays[0] <= 600, `the first retry comes soon: ${delays}`);

      // Back on the same port: A reconnects by itself, counts and chats.
      server = await startServer('chat', runtime, { port });
      await waitConnected(a, 'A after the restart');
      await count(a, 1);
      const text = `after the restart ${runtime}`;
      await a.locator('#input').fill(text);
      await a.locator('#send').click();
      await waitMessage(a, 'A', text);
      await a.screenshot({ path: path.join(artifactsDir('screenshots'), 'chat-reconnected.png'), fullPage: true });
      assert.deepEqual(problems, [], 'page errors / blocked requests');
      assert.ok(server.alive(), `ws-server died, see ${server.logPath}`);
    } finally {
      await context?.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
      await server.stop();
    }
  });
});

// The same page over https:// and wss://, from a server whose leaf certificate Chromium is told
// to accept by its public-key pin (--ignore-certificate-errors-spki-list): the certificate is a
// fresh test CA's, nothing is installed system-wide, and any other certificate would still fail.
describe('chromium chat page over https and wss', () => {
  let ca;
  before(() => { ca = makeTestCa(); });
  after(() => { if (ca) rmSync(ca.dir, { recursive: true, force: true }); });

  for (const runtime of browserRuntimes) {
    it(`[${runtime}] the page loads over https, connects over wss and chats`, { timeout: 120000 }, async () => {
      const server = await startServer('chat', runtime, { tls: ca });
      const profile = mkdtempSync(path.join(os.tmpdir(), 'ws-chromium-profile-'));
      const problems = [];
      let context;
      try {
        context = await chromium.launchPersistentContext(profile, {
          executablePath: CHROMIUM,
          headless: true,
          args: [...ARGS, `--ignore-certificate-errors-spki-list=${ca.spki}`],
          timeout: 30000,
          viewport: { width: 800, height: 600 },
        });
        context.setDefaultTimeout(TIMEOUT);
        await context.route('**/*', (route) =>
          isLoopback(route.request().url()) ? route.continue() : (problems.push(`blocked ${route.request().url()}`), route.abort()),
        );
        const a = context.pages()[0] ?? (await context.newPage());
        const b = await context.newPage();
        for (const [name, page] of [['A', a], ['B', b]]) {
          page.on('pageerror', (err) => problems.push(`page ${name} error: ${err.message}`));
          const resp = await page.goto(`${server.http}/`, { waitUntil: 'load', timeout: TIMEOUT });
          assert.equal(resp?.status(), 200, `page ${name}: GET / over https`);
          assert.ok(resp.url().startsWith('https://'), resp.url());
        }
        await waitConnected(a, 'A');
        await waitConnected(b, 'B');
        assert.equal(await a.evaluate(() => location.protocol), 'https:');
        const text = `over wss ${runtime} 🔒`;
        await a.locator('#input').fill(text);
        await a.locator('#send').click();
        await waitMessage(a, 'A', text);
        await waitMessage(b, 'B', text);
        const suffix = runtime === 'tokio' ? '' : `-${runtime}`;
        await a.screenshot({ path: path.join(artifactsDir('screenshots'), `chat-https${suffix}.png`), fullPage: true });
        assert.deepEqual(problems, [], 'page errors / blocked requests');
        assert.ok(server.alive(), `ws-server died, see ${server.logPath}`);
      } finally {
        await context?.close().catch(() => {});
        rmSync(profile, { recursive: true, force: true });
        await server.stop();
      }
    });
  }
});
