#!/usr/bin/env bash
# The failover benchmark: corosync-eip vs Pacemaker + ocf:heartbeat:awseip, side by side on
# the namespace lab. Prints a table and regenerates docs/benchmark.md (raw data: bench/results/).
#
#   ./bench/run.sh [--trials N] [--quick] [--no-scale] [--scale-only] [--systems ours,pacemaker]
#                  [--no-idle] [--idle-secs S] [--scale-nodes N] [--scale-eips N] [--render-only]
#                  [--kinds | --kinds-only]
#
# --kinds also runs, after it, the benchmark of the other address kinds (secondary private IP vs
# awsvip + IPaddr2, Route 53 record vs aws-vpc-route53; examples/bench_kinds.rs, debug build,
# results in bench/results/kinds.json and docs/benchmark-kinds.md); --kinds-only runs only that
# one. It takes --trials, --quick, --systems and --render-only too, and also
# --kind-list secondary-ip,dns (passed on as its --kinds).
#
# Needs root, scripts/setup.sh (lab) and bench/setup.sh (pacemaker, resource-agents, crmsh,
# awscli); builds the daemon in release mode (a cold build takes ~12 min on 2 cores).
# Not run here: the hand-over benchmark (denied / unreachable successor), `cargo run --example bench_handoff -- --trials 3`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "$(id -u)" -ne 0 ]; then echo "bench: needs root (namespaces)" >&2; exit 1; fi
render_only=0
kinds=0          # 1: the EIP benchmark, then the kinds; 2: only the kinds
eip_args=()
kind_args=()
prev=""
for a in "$@"; do
    case "$a" in
        --render-only) render_only=1 ;;
        --kinds) kinds=1; continue ;;
        --kinds-only) kinds=2; continue ;;
    esac
    # bench_kinds takes a subset of the options
    if [ "$prev" = "--kind-list" ]; then kind_args+=("--kinds" "$a"); prev=""; continue; fi
    if [ "$a" = "--kind-list" ]; then prev="$a"; continue; fi
    case "$prev" in
        --trials|--systems) kind_args+=("$a") ;;
    esac
    case "$a" in
        --trials|--systems|--quick|--render-only) kind_args+=("$a") ;;
        --trials=*|--systems=*) kind_args+=("$a") ;;
    esac
    eip_args+=("$a")
    prev="$a"
done
set -- "${eip_args[@]+"${eip_args[@]}"}"
run_kinds() {
    # debug build (the kinds benchmark compares agents that take seconds; the daemon's build
    # profile does not change the picture), daemon beside the example
    if [ $render_only -eq 0 ]; then
        cargo build --bin corosync-eip
    fi
    cargo build --example bench_kinds
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    local kstart
    kstart=$(date +%s)
    "$target/debug/examples/bench_kinds" "${kind_args[@]+"${kind_args[@]}"}"
    echo "bench: kinds done in $(( $(date +%s) - kstart )) s; results in docs/benchmark-kinds.md"
}
if [ $render_only -eq 0 ]; then
    [ -x "$ROOT/.venv/bin/python" ] || "$ROOT/scripts/setup.sh"
    "$ROOT/bench/setup.sh"
    [ $kinds -eq 2 ] || cargo build --release --bin corosync-eip
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk "BEGIN{exit !($load >= 1.5)}"; then
        echo "bench: warning: load average is $load (>= 1.5): timings will be noisy" >&2
    fi
fi
if [ $kinds -eq 2 ]; then
    run_kinds
    exit 0
fi
cargo build --release --example bench_failover
start=$(date +%s)
"${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_failover" "$@"
echo "bench: done in $(( $(date +%s) - start )) s; results in docs/benchmark.md"
if [ $kinds -eq 1 ]; then
    run_kinds
fi
