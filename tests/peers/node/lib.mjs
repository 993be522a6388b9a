// Shared helpers for the Node peer tests: locate binaries, start/stop ws-server on a free
// loopback port, bounded waits.
//
// Environment:
//   WS_BIN_DIR        directory with ws-server (default: <repo>/target/release)
//   WS_RUNTIMES       space/comma separated runtimes (default: all four; browser test: tokio)
//   WS_ARTIFACTS_DIR  artifacts root (default: <repo>/artifacts)
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, accessSync, constants } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..', '..');
export const ALL_RUNTIMES = ['tokio', 'async-std', 'smol', 'blocking'];

function fromRepo(p) {
  return path.isAbsolute(p) ? p : path.resolve(REPO_ROOT, p);
}

export function runtimes(defaults = ALL_RUNTIMES) {
  const raw = (process.env.WS_RUNTIMES || '').split(/[\s,]+/).filter(Boolean);
  const list = raw.length ? raw : defaults;
  for (const r of list) {
    if (!ALL_RUNTIMES.includes(r)) throw new Error(`WS_RUNTIMES: unknown runtime ${r}`);
  }
  return list;
}

export function binary(name) {
  const p = path.join(fromRepo(process.env.WS_BIN_DIR || 'target/release'), name);
  accessSync(p, constants.X_OK); // throws a clear ENOENT/EACCES with the path
  return p;
}

export function artifactsDir(...sub) {
  const d = path.join(fromRepo(process.env.WS_ARTIFACTS_DIR || 'artifacts'), ...sub);
  mkdirSync(d, { recursive: true });
  return d;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => { s.destroy(); resolve(ok); };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Certificates for TLS tests, made fresh by tests/peers/make-test-ca.sh in a temporary
 * directory: { dir, ca, cert, key, spki } (spki: the leaf's base64 SHA-256 public-key pin).
 */
export function makeTestCa() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-test-ca-'));
  execFileSync(path.join(REPO_ROOT, 'tests', 'peers', 'make-test-ca.sh'), [dir], { timeout: 60000 });
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    cert: path.join(dir, 'server.pem'),
    key: path.join(dir, 'server.key'),
    spki: readFileSync(path.join(dir, 'server.spki'), 'utf8').trim(),
  };
}

/**
 * Start `ws-server --mode MODE --runtime RUNTIME` on a free 127.0.0.1 port; wait (bounded) until it
 * listens. With `tls` (from makeTestCa) it serves https:// and wss://.
 */
export async function startServer(mode, runtime, { timeoutMs = 15000, tls = null, extra = [], port: fixedPort = null } = {}) {
  // A fixed port brings a server back where its pages expect it (a restart).
  const port = fixedPort ?? (await freePort());
  const addr = `127.0.0.1:${port}`;
  const logPath = path.join(artifactsDir('peers', 'node'), `ws-server-${mode}-${runtime}-${port}.log`);
  const log = createWriteStream(logPath);
  const args = ['--addr', addr, '--mode', mode, '--runtime', runtime];
  if (tls) args.push('--tls-cert', tls.cert, '--tls-key', tls.key);
  args.push(...extra);
  const child = spawn(binary('ws-server'), args, {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  let exited = null;
  child.once('exit', (code, signal) => { exited = { code, signal }; });

  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    if (exited) throw new Error(`ws-server exited early (${JSON.stringify(exited)}), log: ${logPath}`);
    if (await tryConnect(port)) break;
    if (Date.now() > deadline || i > 1000) {
      child.kill('SIGKILL');
      throw new Error(`ws-server did not listen on ${addr} within ${timeoutMs} ms, log: ${logPath}`);
    }
    await sleep(50);
  }

  return {
    port,
    addr,
    url: `${tls ? 'wss' : 'ws'}://${addr}`,
    http: `${tls ? 'https' : 'http'}://${addr}`,
    logPath,
    alive: () => exited === null,
    async stop() {
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    },
  };
}

/** Promise with a deadline. */
export function withTimeout(promise, ms, what) {
  let t;
  const timer = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timer]).finally(() => clearTimeout(t));
}
