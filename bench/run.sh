#!/usr/bin/env bash
# The benchmarks, on the namespace lab:
#   - corosync-eip vs Pacemaker + ocf:heartbeat:awseip, side by side (docs/benchmark.md);
#   - the scale run: every address kind on a 16-node cluster, losing the busiest node
#     (docs/benchmark-scale.md);
#   - with --kinds: the other address kinds against their Pacemaker agents, secondary private IP
#     vs awsvip + IPaddr2 and Route 53 record vs aws-vpc-route53 (docs/benchmark-kinds.md);
#   - with --fencing: what [fencing] stop_instance adds to a hard failover, off and on side by
#     side in one run (docs/benchmark-fencing.md).
# Raw data: bench/results/.
#
#   ./bench/run.sh [--trials N] [--quick] [--systems ours,pacemaker] [--no-idle] [--idle-secs S]
#                  [--no-scale | --scale-only] [--scale-nodes N] [--scale-eips N] [--scale-vips N]
#                  [--scale-secondary N] [--scale-records N] [--scale-layouts spread,services]
#                  [--scale-services N] [--kinds | --kinds-only] [--kind-list secondary-ip,dns]
#                  [--fencing | --fencing-only]
#                  [--render-only]
#
# --trials, --quick, --systems and --render-only apply to the kinds benchmark too; --trials to
# the fencing benchmark.
# Needs root, scripts/setup.sh (lab) and bench/setup.sh (pacemaker, resource-agents, crmsh,
# awscli, dig); builds the daemon in release mode (a cold build takes ~18 min on 2 cores).
# Not run here: the hand-over benchmark (denied / unreachable successor), `cargo run --example bench_handoff -- --trials 3`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "$(id -u)" -ne 0 ]; then echo "bench: needs root (namespaces)" >&2; exit 1; fi
render_only=0
run_failover=1
run_scale=1
run_kinds=0
run_fencing=0
fencing_args=()
failover_args=()
scale_args=()
kind_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --render-only) render_only=1; failover_args+=("$1"); scale_args+=("$1"); kind_args+=("$1") ;;
        --quick) failover_args+=("$1"); kind_args+=("$1") ;;
        --trials|--systems)
            [ $# -ge 2 ] || { echo "bench: $1 needs a value" >&2; exit 64; }
            failover_args+=("$1" "$2"); kind_args+=("$1" "$2")
            [ "$1" = --trials ] && fencing_args+=("$1" "$2")
            shift ;;
        --no-scale) run_scale=0 ;;
        --scale-only) run_failover=0 ;;
        --kinds) run_kinds=1 ;;
        --kinds-only) run_kinds=1; run_failover=0; run_scale=0 ;;
        --fencing) run_fencing=1 ;;
        --fencing-only) run_fencing=1; run_failover=0; run_scale=0 ;;
        --kind-list)
            [ $# -ge 2 ] || { echo "bench: $1 needs a value" >&2; exit 64; }
            kind_args+=("--kinds" "$2"); shift ;;
        --scale-*)
            [ $# -ge 2 ] || { echo "bench: $1 needs a value" >&2; exit 64; }
            scale_args+=("--${1#--scale-}" "$2"); shift ;;
        *) failover_args+=("$1") ;;
    esac
    shift
done
# The measured daemon: the release build of this target directory (CARGO_TARGET_DIR lets the
# benchmark keep its fully optimised build apart from the test suite's quicker one).
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export BENCH_DAEMON_BIN="${BENCH_DAEMON_BIN:-$TARGET/release/corosync-eip}"
if [ $render_only -eq 0 ]; then
    [ -x "$ROOT/.venv/bin/python" ] || "$ROOT/scripts/setup.sh"
    [ $run_failover -eq 0 ] && [ $run_kinds -eq 0 ] || "$ROOT/bench/setup.sh"
    [ $run_failover -eq 0 ] && [ $run_scale -eq 0 ] || cargo build --release --bin corosync-eip
    # The kinds benchmark runs the debug daemon: its agents take seconds, the build profile of
    # a daemon that takes milliseconds does not change the picture.
    [ $run_kinds -eq 0 ] && [ $run_fencing -eq 0 ] || cargo build --bin corosync-eip
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk "BEGIN{exit !($load >= 1.5)}"; then
        echo "bench: warning: load average is $load (>= 1.5): timings will be noisy" >&2
    fi
fi
start=$(date +%s)
if [ $run_failover -eq 1 ]; then
    cargo build --release --example bench_failover
    "$TARGET/release/examples/bench_failover" "${failover_args[@]+"${failover_args[@]}"}"
fi
if [ $run_scale -eq 1 ]; then
    cargo build --release --example bench_scale
    "$TARGET/release/examples/bench_scale" "${scale_args[@]+"${scale_args[@]}"}"
fi
if [ $run_kinds -eq 1 ]; then
    cargo build --example bench_kinds
    BENCH_DAEMON_BIN="$TARGET/debug/corosync-eip" "$TARGET/debug/examples/bench_kinds" "${kind_args[@]+"${kind_args[@]}"}"
fi
if [ $run_fencing -eq 1 ] && [ $render_only -eq 0 ]; then
    # Fencing off and on alternate in one run of the debug daemon, as docs/benchmark-fencing.md was made.
    cargo build --example bench_fencing
    BENCH_DAEMON_BIN="$TARGET/debug/corosync-eip" "$TARGET/debug/examples/bench_fencing" "${fencing_args[@]+"${fencing_args[@]}"}"
fi
echo "bench: done in $(( $(date +%s) - start )) s; results in docs/benchmark*.md"
