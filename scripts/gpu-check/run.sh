#!/usr/bin/env bash
# Runs videothinker's CUDA-relevant uvu tests on a machine without node/npm.
# Usage (from the repo root): OUT=/some/empty/dir bash .gpu-check/run.sh
# Writes to $OUT: all.log (everything), backend.json, summary.txt.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="${OUT:-/tmp/vt-out}"
mkdir -p "$OUT"
cd "$ROOT" || exit 1
START=$(date +%s)
BUDGET_S="${VT_BUDGET_S:-210}"     # stop starting new test files after this many seconds
PER_FILE_S="${VT_PER_FILE_S:-120}"
NODE=/tmp/node
ADDON=/tmp/videothinker.node
LOG="$OUT/all.log"
SUM="$OUT/summary.txt"
: > "$LOG"; : > "$SUM"
log() { echo "$*" | tee -a "$LOG"; }

unxz_to() { # in out
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" > "$2"
  else python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2"
  fi
}

log "== decompress ($(command -v xz >/dev/null 2>&1 && echo xz || echo python-lzma))"
unxz_to "$HERE/bin/node.xz" "$NODE" && chmod +x "$NODE"
unxz_to "$HERE/bin/videothinker.node.xz" "$ADDON"
if command -v sha256sum >/dev/null 2>&1; then
  sha256sum -c "$HERE/bin/SHA256SUMS" 2>&1 | tee -a "$LOG"
fi
log "decompressed in $(( $(date +%s) - START ))s"

log "== machine"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -L 2>&1 | tee -a "$LOG"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 | tee -a "$LOG"
else
  log "nvidia-smi: not found"
fi
log "node: $("$NODE" --version 2>&1)"
log "python3: $(python3 -c 'import sys,numpy,torch; print(sys.version.split()[0], "numpy", numpy.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1)"
log "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2-) x $(nproc)"

log "== backend()"
"$NODE" -e 'console.log(JSON.stringify(require(process.argv[1]).backend()))' "$ADDON" > "$OUT/backend.json" 2>&1
cat "$OUT/backend.json" | tee -a "$LOG"
DEVS=$("$NODE" -e 'try{const b=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(b.cuda.devices.length)}catch{console.log("?")}' "$OUT/backend.json")
log "cuda devices seen by the addon: $DEVS"

# CUDA files first; matmul/ops have no device paths (CPU sanity on this host only).
FILES="${VT_FILES:-attention cdpo gather tensor matmul ops}"
for f in $FILES; do
  el=$(( $(date +%s) - START ))
  left=$(( BUDGET_S - el ))
  if [ "$left" -le 5 ]; then log "== $f: NOT RUN (time budget spent at ${el}s)"; echo "$f: not run (budget)" >> "$SUM"; continue; fi
  t=$PER_FILE_S; [ "$left" -lt "$t" ] && t=$left
  log "== $f (timeout ${t}s, elapsed ${el}s)"
  s=$(date +%s)
  tmp="/tmp/vt-$f.log"
  VT_TEST_CUDA=1 VT_EXPECT_CUDA_COMPILED=1 VT_PYTHON=python3 VT_ADDON_PATH="$ADDON" NO_COLOR=1 \
    timeout -k 10 "$t" "$NODE" --expose-gc "$HERE/test/$f.test.mjs" > "$tmp" 2>&1
  rc=$?
  cat "$tmp" >> "$LOG"
  tail -n 40 "$tmp"
  total=$(grep -a -oE 'Total: +[0-9]+' "$tmp" | grep -oE '[0-9]+' | tail -1)
  passed=$(grep -a -oE 'Passed: +[0-9]+' "$tmp" | grep -oE '[0-9]+' | tail -1)
  skipped=$(grep -a -oE 'Skipped: +[0-9]+' "$tmp" | grep -oE '[0-9]+' | tail -1)
  vtskip=$(grep -a -c '\[vt-skip\]' "$tmp")
  line="$f: rc=$rc total=${total:-?} passed=${passed:-?} failed=$( [ -n "$total" ] && [ -n "$passed" ] && echo $(( total - passed )) || echo "?") skipped=${skipped:-?} vt-skip=$vtskip time=$(( $(date +%s) - s ))s"
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && line="$line TIMEOUT"
  echo "$line" >> "$SUM"
done

log "== summary (total $(( $(date +%s) - START ))s, cuda devices: $DEVS)"
cat "$SUM" | tee -a "$LOG"
exit 0
