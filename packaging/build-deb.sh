#!/bin/sh
# Build the Debian package of isol: target/debian/isol_VERSION_ARCH.deb, containing the
# `isol` binary, libisol (.so and .a), isol.h, a pkg-config file, a manual page per
# subcommand, bash/zsh/fish completions and the systemd units. Uses only cargo and
# dpkg-deb; prints the path of the package.
set -eu
# Modes are set explicitly below; the builder's umask must not reach the package.
umask 022
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ARCH=$(dpkg --print-architecture)
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
cargo build --release --locked -q -p isol-cli -p isol-capi
REL=${CARGO_TARGET_DIR:-target}/release
OUT=target/debian
STAGE=$OUT/isol_${VERSION}_${ARCH}
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"
LIB=$STAGE/usr/lib/$MULTIARCH
install -D -m 0755 $REL/isol "$STAGE/usr/bin/isol"
install -D -m 0644 $REL/libisol.so "$LIB/libisol.so"
install -D -m 0644 $REL/libisol.a "$LIB/libisol.a"
install -D -m 0644 crates/isol-capi/include/isol.h "$STAGE/usr/include/isol.h"
# The release profile keeps line tables for profiling; a package ships stripped files.
strip --strip-unneeded "$STAGE/usr/bin/isol" "$LIB/libisol.so"
strip --strip-debug "$LIB/libisol.a"
mkdir -p "$LIB/pkgconfig"
sed -e "s/@VERSION@/$VERSION/" -e "s/@MULTIARCH@/$MULTIARCH/" packaging/debian/isol.pc.in > "$LIB/pkgconfig/isol.pc"
MAN=$STAGE/usr/share/man/man1
$REL/isol man "$MAN"
gzip -9n "$MAN"/*.1
install -d "$STAGE/usr/share/bash-completion/completions" "$STAGE/usr/share/zsh/vendor-completions" "$STAGE/usr/share/fish/vendor_completions.d"
$REL/isol completions bash > "$STAGE/usr/share/bash-completion/completions/isol"
$REL/isol completions zsh > "$STAGE/usr/share/zsh/vendor-completions/_isol"
$REL/isol completions fish > "$STAGE/usr/share/fish/vendor_completions.d/isol.fish"
install -D -m 0644 packaging/systemd/isol-apply@.service "$STAGE/usr/lib/systemd/system/isol-apply@.service"
install -D -m 0644 packaging/systemd/isol-watch.service "$STAGE/usr/lib/systemd/system/isol-watch.service"
install -D -m 0644 README.md "$STAGE/usr/share/doc/isol/README.md"
for d in docs/*.md; do install -m 0644 "$d" "$STAGE/usr/share/doc/isol/"; done
# Every directory 0755 and every file 0644 but the binary, whatever made them.
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f -exec chmod 0644 {} +
chmod 0755 "$STAGE/usr/bin/isol"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" packaging/debian/control.in > "$STAGE/DEBIAN/control"
echo "Installed-Size: $(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)" >> "$STAGE/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT/isol_${VERSION}_${ARCH}.deb" > /dev/null
echo "$OUT/isol_${VERSION}_${ARCH}.deb"
