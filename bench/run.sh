#!/usr/bin/env bash
# The benchmarks, on the namespace lab: corosync-eip vs Pacemaker + ocf:heartbeat:awseip side by
# side (docs/benchmark.md), then the scale run: every address kind on a 16-node cluster, losing
# the busiest node (docs/benchmark-scale.md). Raw data: bench/results/.
#
#   ./bench/run.sh [--trials N] [--quick] [--systems ours,pacemaker] [--no-idle] [--idle-secs S]
#                  [--no-scale | --scale-only] [--scale-nodes N] [--scale-eips N] [--scale-vips N]
#                  [--scale-secondary N] [--scale-records N] [--scale-layouts spread,services]
#                  [--scale-services N] [--render-only]
#
# Needs root, scripts/setup.sh (lab) and bench/setup.sh (pacemaker, resource-agents, crmsh,
# awscli); builds the daemon in release mode (a cold build takes ~18 min on 2 cores).
# Not run here: the hand-over benchmark (denied / unreachable successor), `cargo run --example bench_handoff -- --trials 3`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "$(id -u)" -ne 0 ]; then echo "bench: needs root (namespaces)" >&2; exit 1; fi
render_only=0
run_failover=1
run_scale=1
failover_args=()
scale_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --render-only) render_only=1; failover_args+=("$1"); scale_args+=("$1") ;;
        --no-scale) run_scale=0 ;;
        --scale-only) run_failover=0 ;;
        --scale-*)
            [ $# -ge 2 ] || { echo "bench: $1 needs a value" >&2; exit 64; }
            scale_args+=("--${1#--scale-}" "$2"); shift ;;
        *) failover_args+=("$1") ;;
    esac
    shift
done
if [ $render_only -eq 0 ]; then
    [ -x "$ROOT/.venv/bin/python" ] || "$ROOT/scripts/setup.sh"
    [ $run_failover -eq 0 ] || "$ROOT/bench/setup.sh"
    cargo build --release --bin corosync-eip
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk "BEGIN{exit !($load >= 1.5)}"; then
        echo "bench: warning: load average is $load (>= 1.5): timings will be noisy" >&2
    fi
fi
# The measured daemon: the release build of this target directory (CARGO_TARGET_DIR lets the
# benchmark keep its fully optimised build apart from the test suite's quicker one).
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export BENCH_DAEMON_BIN="${BENCH_DAEMON_BIN:-$TARGET/release/corosync-eip}"
start=$(date +%s)
if [ $run_failover -eq 1 ]; then
    cargo build --release --example bench_failover
    "$TARGET/release/examples/bench_failover" "${failover_args[@]}"
fi
if [ $run_scale -eq 1 ]; then
    cargo build --release --example bench_scale
    "$TARGET/release/examples/bench_scale" "${scale_args[@]}"
fi
echo "bench: done in $(( $(date +%s) - start )) s; results in docs/benchmark.md and docs/benchmark-scale.md"
