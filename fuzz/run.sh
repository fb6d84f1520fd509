#!/usr/bin/env bash
# Runs each fuzz target for the given number of seconds (default 600), starting from the
# committed seed corpus. Needs `cargo install cargo-fuzz`; on a stable toolchain the
# sanitizer flags need RUSTC_BOOTSTRAP=1, which this script sets.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
export RUSTC_BOOTSTRAP=1
for target in parse pipeline generated data; do
  work="$(mktemp -d)"
  cp corpus/"$target"/* "$work"/
  cargo fuzz run --sanitizer none --release "$target" "$work" -- -max_total_time="$secs" -max_len=4096
done
