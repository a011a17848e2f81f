#!/usr/bin/env bash
# Builds the container image localhost/sfprocessor:<version> (and :latest) from the release
# binaries with podman (or buildah), using the repository's Dockerfile (stage `runtime`,
# BINARIES=prebuilt: the Rust build stage is not run).
#
# The base is debian:bookworm-slim when it can be pulled; otherwise (no registry reachable)
# a Debian bookworm root made here with debootstrap from the Debian mirror and imported as
# localhost/sfprocessor-base:bookworm. Its tarball is cached in $SFP_CONTAINER_CACHE
# (~/.cache/sfprocessor-container), so only the first build pays for debootstrap.
# RUN steps use --isolation chroot: they need no OCI runtime (crun cannot start containers here).
#
#   packaging/container/build.sh           # prints the image name on its last line
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CACHE=${SFP_CONTAINER_CACHE:-$HOME/.cache/sfprocessor-container}
# Pinned: a rebuild of the base gives the same Debian release.
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PULL_BASE=docker.io/library/debian:bookworm-slim
LOCAL_BASE=localhost/sfprocessor-base:$SUITE
IMAGE=localhost/sfprocessor

if command -v podman >/dev/null; then
    BUILDER=(podman build)
    IMAGES=podman
elif command -v buildah >/dev/null; then
    BUILDER=(buildah build)
    IMAGES=buildah
else
    echo "container build: neither podman nor buildah is installed (apt-get install -y podman)" >&2
    exit 1
fi

# The base image: pulled, already imported, imported from the cached tarball, or debootstrapped.
base_image() {
    if $IMAGES image exists "$LOCAL_BASE" 2>/dev/null; then echo "$LOCAL_BASE"; return; fi
    if timeout 60 $IMAGES pull -q "$PULL_BASE" >/dev/null 2>&1; then echo "$PULL_BASE"; return; fi
    local tarball=$CACHE/debian-$SUITE-minbase.tar.gz
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || { echo "container build: $PULL_BASE cannot be pulled and debootstrap is missing (apt-get install -y debootstrap)" >&2; exit 1; }
        echo "== $PULL_BASE cannot be pulled: debootstrap $SUITE (minbase) from $MIRROR" >&2
        local start=$SECONDS rootfs
        mkdir -p "$CACHE"
        rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
        # What bookworm-slim leaves out too: package caches and lists, docs, man pages.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
               "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
        tar --numeric-owner -C "$rootfs" -czf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
        echo "== debootstrap took $((SECONDS - start)) s; cached in $tarball" >&2
    fi
    $IMAGES import --change 'CMD ["/bin/bash"]' "$tarball" "$LOCAL_BASE" >/dev/null
    echo "$LOCAL_BASE"
}

start=$SECONDS
echo "== release binaries"
cargo build --release -p sfprocessor -p sfreplay
VERSION=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "sfprocessor"))')

BASE=$(base_image)
echo "== base image: $BASE"

# The build context: only what the runtime stage copies, laid out as in the repository.
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
mkdir -p "$CONTEXT/prebuilt" "$CONTEXT/packaging/container" "$CONTEXT/config"
for bin in sfprocessor sfreplay; do
    strip -o "$CONTEXT/prebuilt/$bin" "$TARGET_DIR/release/$bin"
done
cp Dockerfile README.md "$CONTEXT/"
cp packaging/container/entrypoint.sh packaging/container/pipeline.json "$CONTEXT/packaging/container/"
cp -r config/policies "$CONTEXT/config/"

echo "== image $IMAGE:$VERSION"
"${BUILDER[@]}" --isolation chroot --pull=never --target runtime \
    --build-arg BINARIES=prebuilt --build-arg BASE_IMAGE="$BASE" --build-arg VERSION="$VERSION" \
    -t "$IMAGE:$VERSION" -t "$IMAGE:latest" -f "$CONTEXT/Dockerfile" "$CONTEXT"
echo "== container image built in $((SECONDS - start)) s"
echo "$IMAGE:$VERSION"
