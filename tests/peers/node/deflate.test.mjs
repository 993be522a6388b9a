// Node `ws` with perMessageDeflate on, against `ws-server --mode echo --deflate`
// (node --test). Runtimes: WS_RUNTIMES (default all four).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { runtimes, startServer, withTimeout } from './lib.mjs';

/** Sends each message and waits for its echo; resolves with the negotiated extensions. */
async function echoAll(url, options, messages) {
  const ws = new WebSocket(url, { maxPayload: 64 << 20, handshakeTimeout: 10000, ...options });
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }),
    10000,
    `connect ${url}`,
  );
  for (const m of messages) {
    const got = withTimeout(
      new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data, isBinary }))),
      20000,
      'echo',
    );
    ws.send(m);
    const { data, isBinary } = await got;
    assert.equal(isBinary, Buffer.isBuffer(m));
    assert.ok(Buffer.from(data).equals(Buffer.from(m)), `echo of ${m.length} bytes differs`);
  }
  const extensions = ws.extensions;
  ws.close(1000);
  await withTimeout(new Promise((resolve) => ws.once('close', resolve)), 10000, 'close');
  return extensions;
}

const MESSAGES = [
  '',
  'hello',
  JSON.stringify({ type: 'chat', user: 'alice', text: 'hello everyone '.repeat(30) }),
  'ünïcödé 😀 '.repeat(5000),
  Buffer.alloc(1 << 20, 7),
  Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 31) % 251)),
];

for (const runtime of runtimes()) {
  describe(`ws (node, perMessageDeflate) -> ws-server --deflate echo [${runtime}]`, () => {
    let server;
    before(async () => { server = await startServer('echo', runtime, { extra: ['--deflate'] }); });
    after(async () => { await server?.stop(); });

    const offers = {
      default: true,
      'no context takeover, windows 10/9': {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 9,
        threshold: 0,
      },
    };
    for (const [name, perMessageDeflate] of Object.entries(offers)) {
      it(`negotiates and echoes (${name})`, async () => {
        const ext = await echoAll(server.url, { perMessageDeflate }, MESSAGES);
        assert.match(ext, /permessage-deflate/);
      });
    }

    it('server still alive', () => {
      assert.ok(server.alive(), `ws-server died, see ${server.logPath}`);
    });
  });
}
