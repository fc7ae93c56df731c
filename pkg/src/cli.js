#!/usr/bin/env node
// `npx freshtoken …`: runs the native `freshtoken` command (Rust). The npm
// package is the library (WebAssembly); the command is a separate binary:
// `cargo install --locked --path cli` in a checkout of the repository, or point
// FRESHTOKEN_BIN at it. Arguments, stdio and the exit status pass through.

import { spawnSync } from 'node:child_process';
import { accessSync, constants, realpathSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = realpathSync(fileURLToPath(import.meta.url));
const NAMES = process.platform === 'win32' ? ['freshtoken.exe'] : ['freshtoken'];

/** An executable that is not this script (npm links it as `freshtoken` too). */
function runnable(path) {
  try {
    accessSync(path, constants.X_OK);
    return realpathSync(path) !== self;
  } catch {
    return false;
  }
}

function findBinary() {
  if (process.env.FRESHTOKEN_BIN) return process.env.FRESHTOKEN_BIN;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of dir ? NAMES : []) {
      if (runnable(join(dir, name))) return join(dir, name);
    }
  }
  return null;
}

// A wrapper that found another wrapper would start itself forever.
const bin = process.env.FRESHTOKEN_NPX_WRAPPER === '1' ? null : findBinary();
if (bin === null) {
  process.stderr.write(
    'freshtoken: the native command is not installed.\n'
    + 'Install it with Rust (https://rustup.rs), from a checkout of the freshtoken repository:\n'
    + '  cargo install --locked --path cli\n'
    + 'or set FRESHTOKEN_BIN to the binary.\n',
  );
  process.exit(127);
}
const result = spawnSync(bin, process.argv.slice(2), {
  stdio: 'inherit',
  env: { ...process.env, FRESHTOKEN_NPX_WRAPPER: '1' },
});
if (result.error) {
  process.stderr.write(`freshtoken: cannot run ${bin} (${result.error.code ?? result.error.message})\n`);
  process.exit(127);
}
if (result.signal) process.kill(process.pid, result.signal);
process.exit(result.status ?? 1);
