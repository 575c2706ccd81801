#!/usr/bin/env bash
# The whole test suite: unit and property tests of the core, CLI tests, and the multi-node
# scenarios on real corosync (network namespaces) with moto as EC2. Needs root.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
# One test at a time: the cluster scenarios are timing-sensitive on a 2-core machine.
cargo test --all-targets -- --test-threads=1
