#!/usr/bin/env bash
# Model-checks the circuit breaker's window with loom: every interleaving of 2-3 threads making a
# few calls (about 10 s in release mode; set LOOM_MAX_PREEMPTIONS to bound the search).
# `--cfg palisade_loom` (not `--cfg loom`, which would switch tokio too) swaps the window's atomics
# and mutex for loom's; a target dir of its own keeps those builds from invalidating the normal ones.
set -euo pipefail
cd "$(dirname "$0")/../.."
export RUSTFLAGS="--cfg palisade_loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
# The slots' sealing and clearing protocol, with explicit seconds.
cargo test -p palisade --release --lib circuit_breaker::window::loom_tests "$@"
# The breaker through its public API: racing failures, minimum calls, a call racing a reset.
cargo test -p palisade --release --test loom_breaker "$@"
