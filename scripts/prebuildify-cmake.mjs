#!/usr/bin/env node
// prebuildify's --node-gyp shim: prebuildify runs `<this> rebuild --target=V --devdir=D --arch=A
// --release|--debug`; we build the same addon with cmake-js instead (CUDA compiled in when nvcc is
// found, OpenBLAS linked statically when its static library is found) into build/Release, where
// prebuildify collects, strips and tags it. Node-API builds need no headers download: cmake-js
// takes them from node-api-headers (package.json "binary": {"napi_versions": [8]}).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
if (args[0] !== 'rebuild') {
  console.error(`prebuildify-cmake: expected 'rebuild', received ${JSON.stringify(args)}`);
  process.exit(2);
}
const arch = args.find((a) => a.startsWith('--arch='))?.slice(7);
const debug = args.includes('--debug');
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
const cmd = [cmakeJs, 'rebuild', `--CDCMAKE_BUILD_TYPE=${debug ? 'Debug' : 'Release'}`, ...(debug ? ['--debug'] : [])];
if (arch) cmd.push(`--arch=${arch}`);
const r = spawnSync(process.execPath, cmd, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
