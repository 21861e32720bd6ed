#!/usr/bin/env bash
# CI (called by .ci/run): what the main workspace never compiles must still build, and every
# fuzz target must survive a short run, so that a target that no longer builds, or that
# crashes on its corpus or at once, is caught here and not the next time someone fuzzes.
#
#   - benches/load (its own workspace: tokio and the peer servers): cargo build.
#   - fuzz/ (its own workspace, libFuzzer): cargo +nightly fuzz build, then each target for
#     RAKIT_FUZZ_SECS seconds (default 30) on a copy of its corpus (fuzz/corpus stays as it
#     is). Without a nightly toolchain: cargo check of the fuzz crate instead, and it says so.
#
# Build output goes under CARGO_TARGET_DIR (or ./target) in fuzz/ and load/, apart from the
# main workspace's. docs/testing.md has the details.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs="${RAKIT_FUZZ_SECS:-30}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== cargo build benches/load"
cargo build --manifest-path benches/load/Cargo.toml --target-dir "$target_dir/load"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "== no nightly toolchain: cargo check of the fuzz targets only (they are not run)"
  cargo check --manifest-path fuzz/Cargo.toml --bins --target-dir "$target_dir/fuzz-check"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Release with debug assertions: fast enough to cover ground in 30 s, overflow checks on.
fuzz=(cargo +nightly fuzz)
flags=(-O --debug-assertions --target-dir "$target_dir/fuzz")
echo "== cargo fuzz build"
"${fuzz[@]}" build "${flags[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $("${fuzz[@]}" list); do
  echo "== cargo fuzz run $target (${secs} s)"
  artifacts="$target_dir/fuzz-artifacts/$target"
  mkdir -p "$work/$target" "$artifacts"
  seeds=()
  [[ -d "fuzz/corpus/$target" ]] && seeds=("fuzz/corpus/$target")
  # New inputs go to the first corpus directory, a scratch one; a crash is kept under
  # $target_dir/fuzz-artifacts/ and fails the run.
  if ! "${fuzz[@]}" run "${flags[@]}" "$target" "$work/$target" "${seeds[@]}" -- \
    -max_total_time="$secs" -artifact_prefix="$artifacts/" -print_final_stats=1; then
    echo "fuzz target $target failed; the input that broke it:" >&2
    ls -l "$artifacts" >&2
    for crash in "$artifacts"/*; do
      [[ -f "$crash" ]] && od -c "$crash" | head -20 >&2
    done
    exit 1
  fi
done
