#!/usr/bin/env bash
# Provision the lab: QEMU, busybox and cpio from the distribution, and Debian's 6.12 cloud
# kernel (built with CONFIG_NO_HZ_FULL=y) cached under target/lab/kernel.
# Idempotent: does nothing when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=target/lab/kernel
meta=linux-image-6.12-cloud-amd64

say() { echo "lab provision: $*" >&2; }

need=()
for p in qemu-system-x86 busybox-static cpio; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
updated=0
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then
    say "missing packages: ${need[*]}; install them with: sudo apt-get install ${need[*]}"
    exit 1
  fi
  say "installing ${need[*]}"
  apt-get update -qq || { say "apt-get update failed (no network?); install ${need[*]} by hand"; exit 1; }
  updated=1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# fetch CACHE META: resolve the meta package META to its versioned kernel package, download
# it and keep its vmlinuz and config in CACHE.
fetch() {
  local cache=$1 meta=$2 pkg tmp
  if [ -s "$cache/vmlinuz" ] && [ -s "$cache/config" ]; then
    say "ready: kernel $(cat "$cache/release") in $cache"
    return
  fi
  pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  if [ -z "$pkg" ] && [ "$updated" = 0 ]; then
    apt-get update -qq || true
    updated=1
    pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  fi
  [ -n "$pkg" ] || { say "cannot resolve $meta to a kernel package (apt lists missing or no network)"; exit 1; }
  say "downloading $pkg"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null) || { rm -rf "$tmp"; say "apt-get download $pkg failed (no network?)"; exit 1; }
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  mkdir -p "$cache"
  cp "$tmp"/x/boot/vmlinuz-* "$cache/vmlinuz"
  cp "$tmp"/x/boot/config-* "$cache/config"
  basename "$tmp"/x/boot/vmlinuz-* | sed 's/^vmlinuz-//' > "$cache/release"
  echo "$pkg" > "$cache/package"
  rm -rf "$tmp"
  grep -q '^CONFIG_NO_HZ_FULL=y' "$cache/config" || { say "$cache/config lacks CONFIG_NO_HZ_FULL=y"; exit 1; }
  say "ready: kernel $(cat "$cache/release") in $cache"
}

# The three lab kernels: 6.12 cloud (the default), 6.1 cloud (bookworm's LTS: no
# ipi_send_cpu tracepoints, no fair server), 6.12 PREEMPT_RT (osnoise and timerlat tracers).
fetch "$cache" "$meta"
fetch target/lab/kernel-6.1 linux-image-cloud-amd64
fetch target/lab/kernel-rt linux-image-6.12-rt-amd64
