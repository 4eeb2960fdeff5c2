#!/bin/sh
# Build isol's OCI image with nothing pulled from a registry: the equivalent of
#
#     FROM scratch
#     COPY isol /usr/bin/isol
#     ENTRYPOINT ["/usr/bin/isol"]
#     CMD ["watch", "--summary"]
#
# made by hand, so that no image builder is needed. `isol` is built static (glibc,
# static-pie) and stripped; the image holds it, its licence and docs, and nothing else.
# The layer is reproducible: sorted, owned by 0:0, dated at the epoch, gzip without a
# name or time, so a given binary always makes the same digests.
#
# Writes target/oci/isol (an OCI image layout, tagged VERSION) and
# target/oci/isol-VERSION.oci.tar (the same layout as one archive), and prints both
# paths. To use it:
#
#     skopeo copy oci:target/oci/isol:VERSION docker://REGISTRY/isol:VERSION
#     ctr -n k8s.io images import target/oci/isol-VERSION.oci.tar   # containerd, no registry
#     podman load -i target/oci/isol-VERSION.oci.tar
#
# ISOL_STATIC_TARGET_DIR chooses cargo's target directory for the static build (default
# target/static); the lab's (target/lab/build) shares its build.
set -eu
umask 022
cd "$(dirname "$0")/../.."
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
TARGET_DIR=${ISOL_STATIC_TARGET_DIR:-target/static}
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --locked \
  --target x86_64-unknown-linux-gnu -p isol-cli --bin isol --target-dir "$TARGET_DIR"
BIN=$TARGET_DIR/x86_64-unknown-linux-gnu/release/isol
if ldd "$BIN" 2>/dev/null | grep -q '=>'; then
  echo "build-image.sh: $BIN is dynamically linked; a FROM scratch image needs it static" >&2
  exit 1
fi

OUT=target/oci
LAYOUT=$OUT/isol
WORK=$OUT/work
rm -rf "$LAYOUT" "$WORK"
mkdir -p "$LAYOUT/blobs/sha256" "$WORK/root/usr/bin" "$WORK/root/usr/share/doc/isol"
install -m 0755 "$BIN" "$WORK/root/usr/bin/isol"
strip --strip-unneeded "$WORK/root/usr/bin/isol"
install -m 0644 README.md docs/metrics.md docs/kubernetes.md "$WORK/root/usr/share/doc/isol/"
[ -f LICENSE ] && install -m 0644 LICENSE "$WORK/root/usr/share/doc/isol/"
# The layer, and its digests: of the tar (diff_id, in the config) and of the gzip (the blob).
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$WORK/root" -cf "$WORK/layer.tar" usr
DIFF_ID=$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)
gzip -9n < "$WORK/layer.tar" > "$WORK/layer.tar.gz"

# Put a file into blobs/sha256 under its digest; print "DIGEST SIZE".
blob() {
  d=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$LAYOUT/blobs/sha256/$d"
  echo "$d $(stat -c %s "$1")"
}
set -- $(blob "$WORK/layer.tar.gz")
LAYER_DIGEST=$1 LAYER_SIZE=$2

cat > "$WORK/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/usr/bin/isol"],"Cmd":["watch","--summary"],"User":"0:0","WorkingDir":"/","Labels":{"org.opencontainers.image.title":"isol","org.opencontainers.image.description":"Task isolation for Linux: every interruption of the isolated CPUs, with its cause and culprit","org.opencontainers.image.version":"$VERSION"}},"rootfs":{"type":"layers","diff_ids":["sha256:$DIFF_ID"]},"history":[{"created_by":"packaging/oci/build-image.sh: usr/bin/isol (static), usr/share/doc/isol"}]}
EOF
set -- $(blob "$WORK/config.json")
CONFIG_DIGEST=$1 CONFIG_SIZE=$2

cat > "$WORK/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$CONFIG_DIGEST","size":$CONFIG_SIZE},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$LAYER_DIGEST","size":$LAYER_SIZE}]}
EOF
set -- $(blob "$WORK/manifest.json")
MANIFEST_DIGEST=$1 MANIFEST_SIZE=$2

printf '{"imageLayoutVersion":"1.0.0"}\n' > "$LAYOUT/oci-layout"
cat > "$LAYOUT/index.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$MANIFEST_DIGEST","size":$MANIFEST_SIZE,"annotations":{"org.opencontainers.image.ref.name":"$VERSION"}}]}
EOF
ARCHIVE=$OUT/isol-$VERSION.oci.tar
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$LAYOUT" -cf "$ARCHIVE" .
rm -rf "$WORK"
echo "$LAYOUT"
echo "$ARCHIVE"
