#!/usr/bin/env bash
# The failover benchmark: corosync-eip vs Pacemaker + ocf:heartbeat:awseip, side by side on
# the namespace lab. Prints a table and regenerates docs/benchmark.md (raw data: bench/results/).
#
#   ./bench/run.sh [--trials N] [--quick] [--no-scale] [--scale-only] [--systems ours,pacemaker]
#                  [--no-idle] [--idle-secs S] [--scale-nodes N] [--scale-eips N] [--render-only]
#
# Needs root, scripts/setup.sh (lab) and bench/setup.sh (pacemaker, resource-agents, crmsh,
# awscli); builds the daemon in release mode (a cold build takes ~12 min on 2 cores).
# Not run here: the hand-over benchmark (denied / unreachable successor), `cargo run --example bench_handoff -- --trials 3`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "$(id -u)" -ne 0 ]; then echo "bench: needs root (namespaces)" >&2; exit 1; fi
render_only=0
for a in "$@"; do [ "$a" = "--render-only" ] && render_only=1; done
if [ $render_only -eq 0 ]; then
    [ -x "$ROOT/.venv/bin/python" ] || "$ROOT/scripts/setup.sh"
    "$ROOT/bench/setup.sh"
    cargo build --release --bin corosync-eip
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk "BEGIN{exit !($load >= 1.5)}"; then
        echo "bench: warning: load average is $load (>= 1.5): timings will be noisy" >&2
    fi
fi
cargo build --release --example bench_failover
start=$(date +%s)
"$ROOT/target/release/examples/bench_failover" "$@"
echo "bench: done in $(( $(date +%s) - start )) s; results in docs/benchmark.md"
