#!/usr/bin/env bash
# Fuzzes the exposition parser for N seconds (default 600) with cargo-fuzz.
# The toolchain here is stable; cargo-fuzz needs nightly flags, which
# RUSTC_BOOTSTRAP=1 unlocks for this build only.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
mkdir -p fuzz/corpus/exposition
cp -n fuzz/seeds/* fuzz/corpus/exposition/ 2>/dev/null || true
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz exposition fuzz/corpus/exposition -- \
  -max_total_time="$secs" -dict=fuzz/exposition.dict -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 25
