#!/usr/bin/env bash
# Fuzzes the CPG message decoder and the configuration parser with cargo-fuzz (libFuzzer) for
# a bounded time each, starting from the corpus kept in fuzz/corpus (grown by each run) and the
# hand-written seeds in fuzz/seeds. Needs a nightly toolchain; installs cargo-fuzz if missing.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# scripts/test.sh runs it when COROSYNC_EIP_FUZZ=1. A crash leaves its input in
# fuzz/artifacts/TARGET/ and fails the run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_TARGET="${1:-60}"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
for target in cpg_decode config_parse; do
    mkdir -p "fuzz/corpus/$target"
    log="$(mktemp)"
    # -s none: no sanitizer (safe Rust); debug assertions stay on, so an overflow is a crash.
    cargo +nightly fuzz run -s none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 2>"$log" || { tail -n 40 "$log"; exit 1; }
    runs="$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo '?')"
    corpus="$(ls "fuzz/corpus/$target" | wc -l)"
    echo "fuzz: $target: $runs executions in ${SECONDS_PER_TARGET}s, no crash; corpus $corpus inputs"
    rm -f "$log"
done
