// A Node process that refreshes one session in a tight loop until it is
// killed, for test/crash.sigkill.test.mjs. Spawned with its configuration as
// JSON in $FRESHTOKEN_CRASH_WORKER:
//
//   { tokenEndpoint, clientId, clientSecret, storeDir, key, markers }
//
// It opens a TokenClient with a FileStore in `storeDir`, prints `ready` on
// stdout, then calls `session.refresh()` (a forced refresh: one rotation
// each) forever. It exits when its stdin closes (the parent is gone).
//
// Progress markers: one line per step, appended to the file `markers` with
// fs.writeSync, so a line is in the kernel before the step after it begins
// and no SIGKILL can take it back. `n` counts this process's refreshes from 1:
//
//   ready 0           about to start the loop
//   mark n            store.save called with the write-ahead record (in doubt)
//   marked n          the write-ahead record is durable: the request may go
//   send n            the token request is about to be handed to fetch
//   answer n STATUS   fetch resolved: the server has answered (and, on 200, rotated)
//   neterr n          fetch rejected
//   save n            store.save called (FileStore: temp file, fsync, rename, fsync dir)
//   saved n           store.save resolved: the record is durable under its name
//   done n            refresh() resolved (after the save, DESIGN 3)
//   fail n CODE/REASON refresh() rejected; the worker then idles until killed
//
// A marker present proves the step before it happened; a marker absent proves
// the step after it never began. Nothing here prints or writes a token.

import { openSync, writeSync } from 'node:fs';
import { FileStore, TokenClient } from 'freshtoken';

const config = JSON.parse(process.env.FRESHTOKEN_CRASH_WORKER ?? 'null');
if (!config?.storeDir || !config.markers || !config.key || !config.tokenEndpoint) {
  console.error('crash-worker: set $FRESHTOKEN_CRASH_WORKER (tokenEndpoint, clientId, clientSecret, storeDir, key, markers)');
  process.exit(2);
}

// Never outlive the parent: it holds our stdin.
process.stdin.on('end', () => process.exit(1));
process.stdin.on('error', () => process.exit(1));
process.stdin.resume();

const markers = openSync(config.markers, 'a');
let n = 0;
const mark = (event, extra = '') => {
  writeSync(markers, `${event} ${n}${extra}\n`);
};

const files = new FileStore(config.storeDir);
const store = {
  load: (key) => files.load(key),
  async save(key, record) {
    // The write-ahead marker (saved before each request) or a settled record.
    const ahead = JSON.parse(record).in_doubt === true;
    mark(ahead ? 'mark' : 'save');
    await files.save(key, record);
    mark(ahead ? 'marked' : 'saved');
  },
};

const client = new TokenClient({
  tokenEndpoint: config.tokenEndpoint,
  clientId: config.clientId,
  clientSecret: config.clientSecret,
  async fetch(input, init) {
    mark('send');
    let response;
    try {
      response = await globalThis.fetch(input, init);
    } catch (err) {
      mark('neterr');
      throw err;
    }
    mark('answer', ` ${response.status}`);
    return response;
  },
});
const session = client.session(config.key, store);

mark('ready');
process.stdout.write('ready\n');

for (;;) {
  n += 1;
  try {
    await session.refresh();
    mark('done');
  } catch (err) {
    mark('fail', ` ${err?.code ?? 'exception'}/${err?.reason ?? '-'}`);
    break;
  }
}
// Failed: stay alive (the parent kills us and reads the `fail` marker).
setInterval(() => {}, 1 << 30);
