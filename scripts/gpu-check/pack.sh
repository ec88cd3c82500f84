#!/usr/bin/env bash
# Packs what the CUDA tests need on a GPU machine without node or npm into .gpu-check/ (gitignored):
# node (xz), the built addon (xz), the test files that have device paths bundled by esbuild, and
# run.sh. Then, on the GPU machine, from the repo root: `OUT=/some/dir bash .gpu-check/run.sh`.
# Does not touch build/, dist/ or any tracked file.
set -eu
cd "$(dirname "$0")/../.."
ADDON="${1:-build/Release/videothinker.node}"
mkdir -p .gpu-check/bin .gpu-check/test
for f in attention cdpo gather tensor matmul ops; do
  node_modules/.bin/esbuild "test/$f.test.ts" --bundle --platform=node --format=esm --target=node20 \
    --outfile=".gpu-check/test/$f.test.mjs" --log-level=warning
done
xz -9e -T2 -c "$ADDON" > .gpu-check/bin/videothinker.node.xz
[ -f .gpu-check/bin/node.xz ] || xz -9e -T2 -c /usr/bin/node > .gpu-check/bin/node.xz
printf '%s  /tmp/node\n%s  /tmp/videothinker.node\n' "$(sha256sum /usr/bin/node | cut -d' ' -f1)" \
  "$(sha256sum "$ADDON" | cut -d' ' -f1)" > .gpu-check/bin/SHA256SUMS
cp scripts/gpu-check/run.sh .gpu-check/run.sh
du -sh .gpu-check
