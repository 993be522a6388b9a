// Node `ws` client against `ws-server --mode echo` (node --test).
// Runtimes: WS_RUNTIMES (default all four). Binaries: WS_BIN_DIR (default target/release).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { runtimes, startServer, withTimeout } from './lib.mjs';

const MiB = 1 << 20;
const SIZES = [0, 125, 126, 65536, MiB];

/** Open a client; resolves once open. Queues every message for `next()`. */
function open(url) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * MiB, handshakeTimeout: 10000 });
  const queue = [];
  const waiters = [];
  let closeInfo = null;
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString('utf8') };
      resolve(closeInfo);
      for (const w of waiters.splice(0)) w.reject(new Error(`closed ${code}`));
    });
  });
  ws.on('message', (data, isBinary) => {
    const m = { data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary };
    if (waiters.length) waiters.shift().resolve(m);
    else queue.push(m);
  });
  ws.on('error', () => {}); // surfaced through 'close' / timeouts
  const next = (ms = 20000) =>
    withTimeout(
      queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve, reject) => {
        if (closeInfo) reject(new Error(`closed ${closeInfo.code}`));
        else waiters.push({ resolve, reject });
      }),
      ms,
      'message',
    );
  const opened = withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }),
    10000,
    `connect ${url}`,
  );
  return opened.then(() => ({ ws, next, closed }));
}

function text(size) {
  const pattern = 'The quick brown fox jumps over the lazy dog 0123456789. ';
  return pattern.repeat(Math.ceil(size / pattern.length) + 1).slice(0, size);
}

async function closeClient(c) {
  if (c.ws.readyState === WebSocket.OPEN) c.ws.close(1000);
  await withTimeout(c.closed, 10000, 'close');
}

for (const runtime of runtimes()) {
  describe(`ws (node) -> ws-server echo [${runtime}]`, () => {
    let server;
    before(async () => { server = await startServer('echo', runtime); });
    after(async () => { await server?.stop(); });

    for (const size of SIZES) {
      it(`text echo ${size} bytes`, async () => {
        const c = await open(server.url);
        const msg = text(size);
        c.ws.send(msg);
        const m = await c.next();
        assert.equal(m.isBinary, false);
        assert.equal(m.data.length, size);
        assert.equal(m.data.toString('utf8'), msg);
        await closeClient(c);
      });

      it(`binary echo ${size} bytes`, async () => {
        const c = await open(server.url);
        const msg = randomBytes(size);
        c.ws.send(msg, { binary: true });
        const m = await c.next();
        assert.equal(m.isBinary, true);
        assert.equal(m.data.length, size);
        assert.ok(m.data.equals(msg), 'payload differs');
        await closeClient(c);
      });
    }

    it('unicode text echo', async () => {
      const c = await open(server.url);
      const msg = 'emoji 😀🎉 CJK 中文 日本語 combining e\u0301 n\u0303';
      c.ws.send(msg);
      const m = await c.next();
      assert.equal(m.isBinary, false);
      assert.equal(m.data.toString('utf8'), msg);
      await closeClient(c);
    });

    it('fragmented text (fin=false ... fin=true) is echoed reassembled', async () => {
      const c = await open(server.url);
      c.ws.send('frag-1 ', { fin: false });
      c.ws.send('frag-2 ', { fin: false });
      c.ws.send('ünïcödé end', { fin: true });
      const m = await c.next();
      assert.equal(m.data.toString('utf8'), 'frag-1 frag-2 ünïcödé end');
      await closeClient(c);
    });

    it('ping -> pong with the same payload', async () => {
      const c = await open(server.url);
      const payload = Buffer.from('ping-payload-\u00ff', 'utf8');
      const pong = withTimeout(new Promise((resolve) => c.ws.once('pong', resolve)), 10000, 'pong');
      c.ws.ping(payload);
      const got = await pong;
      assert.ok(Buffer.from(got).equals(payload), `pong payload ${got.toString('hex')}`);
      // still usable
      c.ws.send('after ping');
      assert.equal((await c.next()).data.toString(), 'after ping');
      await closeClient(c);
    });

    for (const [code, reason] of [[1000, 'bye'], [4000, 'ünïcödé 👋']]) {
      it(`close ${code} is echoed by the server`, async () => {
        const c = await open(server.url);
        c.ws.close(code, reason);
        const info = await withTimeout(c.closed, 10000, 'close');
        assert.equal(info.code, code);
      });
    }

    it('server still alive', () => {
      assert.ok(server.alive(), `ws-server died, see ${server.logPath}`);
    });
  });
}
