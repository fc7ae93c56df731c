// A real headless Chromium (playwright-core) on the browser build of the
// package: a node:http static server serves pkg/lib/ and pkg/dist/web/ and
// a test page on one loopback origin, so the emulator, on another, is a
// cross-origin token endpoint. Used by the browser test files.
//
// The static server also answers `GET /hold` only when told to: a page
// that sends it as a synchronous XMLHttpRequest runs no task until then,
// which makes "this tab did nothing meanwhile" certain, not timed.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];
const PKG_DIR = fileURLToPath(new URL('../../../pkg/', import.meta.url));

/** The reason to skip browser tests here, or false when Chromium is installed. */
export const chromiumSkip = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser tests`;

const MIME = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
};

// The test page: loads the browser entry as a module and reports how that went.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>freshtoken browser test</title></head>
<body>
<script type="module">
  import('/lib/web.js').then(
    (ft) => { window.ft = ft; window.__ftLoaded = 'ok'; },
    (err) => { window.__ftLoaded = 'error: ' + (err && err.stack || err); },
  );
</script>
</body></html>`;

/**
 * Serves pkg/lib/ and pkg/dist/web/ plus the test page on 127.0.0.1:0.
 * `held()` resolves once a `GET /hold` waits; `releaseHolds()` answers
 * every waiting one.
 */
export async function startStaticServer() {
  const served = [];
  const holds = [];
  let arrived = () => {};
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const path = decodeURIComponent(url.pathname);
    served.push(path);
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed');
    if (path === '/' || path === '/index.html') return send(200, MIME['.html'], PAGE);
    if (path === '/favicon.ico') return send(204, 'text/plain', '');
    if (path === '/hold') {
      holds.push(() => send(200, 'text/plain', 'released'));
      arrived();
      return undefined;
    }
    if (!path.startsWith('/lib/') && !path.startsWith('/dist/web/')) return send(404, 'text/plain', 'not found');
    const file = normalize(join(PKG_DIR, path));
    if (!file.startsWith(PKG_DIR) || file.includes(`${sep}..${sep}`)) return send(403, 'text/plain', 'forbidden');
    const type = MIME[extname(file)];
    if (!type) return send(404, 'text/plain', 'not found');
    try {
      return send(200, type, await readFile(file));
    } catch {
      return send(404, 'text/plain', 'not found');
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    served,
    held: () => (holds.length > 0 ? Promise.resolve() : new Promise((resolve) => { arrived = resolve; })),
    releaseHolds: () => holds.splice(0).forEach((answer) => answer()),
    close: () => new Promise((resolve) => {
      holds.splice(0).forEach((answer) => answer());
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

/**
 * Chromium on a fresh profile, its first tab on the test page with the
 * package loaded. Page errors of every tab go to `pageErrors`.
 * `openTab()`: another tab of the same origin (same storage, same Web
 * Locks); `close()` ends the browser and the static server.
 */
export async function openChromium(pageErrors) {
  const site = await startStaticServer();
  const { chromium } = await import('playwright-core');
  const userDataDir = await mkdtemp(join(tmpdir(), 'freshtoken-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });

  /** Opens the test page in `tab` and waits until the package loaded there. */
  const load = async (tab) => {
    await tab.goto(`${site.origin}/`);
    await tab.waitForFunction(() => window.__ftLoaded !== undefined, null, { timeout: 30_000 });
    const loaded = await tab.evaluate(() => window.__ftLoaded);
    assert.equal(loaded, 'ok', `pkg/lib/web.js did not load in Chromium: ${loaded}; page errors: ${pageErrors.join(' | ')}`);
  };
  const openTab = async () => {
    const tab = await context.newPage();
    tab.on('pageerror', (err) => pageErrors.push(String(err?.message ?? err)));
    await load(tab);
    return tab;
  };
  const page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err?.message ?? err)));

  const close = async () => {
    const steps = [
      () => context.close(),
      () => site.close(),
      () => rm(userDataDir, { recursive: true, force: true }),
    ];
    for (const step of steps) {
      try { await step(); } catch (err) { console.error(`cleanup: ${err?.message ?? err}`); }
    }
  };
  return { site, context, page, load, openTab, close };
}
