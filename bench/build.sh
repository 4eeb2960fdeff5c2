#!/bin/sh
# Clean release builds of libisol alone (`-p isol-capi`) and of the whole workspace, and the
# stripped sizes of libisol.so and `isol`, for each git revision given (default: HEAD), each
# in its own worktree and target directory, one after the other in one run.
#   bench/build.sh de544bc HEAD
set -eu
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- HEAD
work=$(mktemp -d)
trap 'for d in "$work"/src-*; do git worktree remove --force "$d" 2>/dev/null || true; done; rm -rf "$work"' EXIT
printf '%-10s %14s %14s %16s %14s %8s\n' rev "libisol (s)" "workspace (s)" "libisol.so (B)" "isol (B)" crates
for rev in "$@"; do
  short=$(git rev-parse --short "$rev")
  src="$work/src-$short"
  git worktree add --quiet --detach "$src" "$rev"
  t1=$( { /usr/bin/time -f %e env CARGO_TARGET_DIR="$work/t1-$short" cargo build -q --release --manifest-path "$src/Cargo.toml" -p isol-capi >/dev/null; } 2>&1 | tail -n 1)
  t2=$( { /usr/bin/time -f %e env CARGO_TARGET_DIR="$work/t2-$short" cargo build -q --release --manifest-path "$src/Cargo.toml" --workspace >/dev/null; } 2>&1 | tail -n 1)
  for f in libisol.so isol; do
    cp "$work/t2-$short/release/$f" "$work/$f"
    strip --strip-unneeded "$work/$f"
  done
  n=$(cd "$src" && cargo tree -p isol-capi -e normal --prefix none 2>/dev/null | sort -u | wc -l)
  printf '%-10s %14s %14s %16s %14s %8s\n' "$short" "$t1" "$t2" "$(stat -c %s "$work/libisol.so")" "$(stat -c %s "$work/isol")" "$n"
done
