#!/usr/bin/env bash
# Fresh machine → a running 3-node lab cluster with EC2 emulated, and a failover shown.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
cargo build --bins --examples
exec "$ROOT/target/debug/examples/demo"
