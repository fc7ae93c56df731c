// Writes the JavaScript the npm package loads, minified (issue 12: the
// package's bytes; gzip -9 of the JavaScript the Node entry loads goes
// from 25.2 KB to 13.9 KB).
//
// - pkg/src/*.js, the hand-written modules (the readable source, shipped
//   too), but for the CLI, become pkg/lib/*.js, each with a source map pointing back at
//   ../src/, which Node (`--enable-source-maps`) and browsers' developer
//   tools follow. The package's exports point at pkg/lib/.
// - The wasm-bindgen glue (pkg/dist/{node,web}/freshtoken.js, generated)
//   is minified in place.
//
// Whitespace and syntax only: names are kept, so stack traces still name
// every function and class, and error classes keep their `name`. Each file
// is transformed on its own (no bundling), so the modules, their relative
// imports (lib/ sits beside src/, so `../dist/…` still resolves) and the
// glue's own file loading are what they were.
//
// Usage: node scripts/minify-js.mjs (from scripts/build-js.sh).

import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PKG = join(ROOT, 'pkg');
const require = createRequire(join(ROOT, '.tools/esbuild/package.json'));
const { transformSync } = require('esbuild');

const options = (format) => ({
  format,
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  target: 'es2022', // Node 20 and current browsers: nothing is rewritten for older engines
});

const src = join(PKG, 'src');
const lib = join(PKG, 'lib');
rmSync(lib, { recursive: true, force: true });
mkdirSync(lib);
let before = 0;
let after = 0;
// cli.js is the `freshtoken` command (it runs the native binary), not part
// of an entry: it stays in src/.
for (const name of readdirSync(src).filter((f) => f.endsWith('.js') && f !== 'cli.js').sort()) {
  const text = readFileSync(join(src, name), 'utf8');
  const out = transformSync(text, {
    ...options('esm'),
    sourcemap: 'external',
    sourcefile: `../src/${name}`,
    sourcesContent: false,
  });
  writeFileSync(join(lib, name), `${out.code}//# sourceMappingURL=${name}.map\n`);
  writeFileSync(join(lib, `${name}.map`), out.map);
  before += text.length;
  after += out.code.length;
}

for (const [dir, format] of [['node', 'cjs'], ['web', 'esm']]) {
  const file = join(PKG, 'dist', dir, 'freshtoken.js');
  const text = readFileSync(file, 'utf8');
  const out = transformSync(text, options(format)).code;
  writeFileSync(file, out);
  before += text.length;
  after += out.length;
}
console.log(`[minify-js] pkg/lib/ and the glue: ${before} → ${after} characters`);
