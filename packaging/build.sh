#!/usr/bin/env bash
# Builds the sfprocessor packages from the release binary into $CARGO_TARGET_DIR/packages
# (target/packages by default): a .deb (cargo-deb), an .rpm (cargo-generate-rpm) and a
# .tar.gz to unpack at /. The installed files are listed once, in host/Cargo.toml's
# [package.metadata.deb] assets; packaging/assets.py derives the .rpm's and the tarball's.
# Installs cargo-deb / cargo-generate-rpm (pinned below) when they are missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# Pinned so a package build does not change with a new tool release.
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET_DIR/packages
STAGE=$OUT/.stage

ensure_tool() { # <cargo subcommand> <crate> <version>
    if ! cargo "$1" --version >/dev/null 2>&1; then
        echo "== installing $2 $3 (cargo install --locked)"
        local start=$SECONDS
        cargo install --locked "$2" --version "$3"
        echo "== $2 installed in $((SECONDS - start)) s"
    fi
}
ensure_tool deb cargo-deb "$CARGO_DEB_VERSION"
ensure_tool generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

echo "== release binaries"
cargo build --release -p sfprocessor -p sfreplay
VERSION=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "sfprocessor"))')
ARCH=$(uname -m)

rm -rf "$OUT"
mkdir -p "$OUT" "$STAGE/bin"
# cargo-deb strips its copies; the rpm and the tarball get the same stripped binaries.
for bin in sfprocessor sfreplay; do
    strip -o "$STAGE/bin/$bin" "$TARGET_DIR/release/$bin"
done
export PACKAGE_BIN_DIR=$STAGE/bin

echo "== .deb"
cargo deb -p sfprocessor --no-build --strip --output "$OUT/"

echo "== .rpm"
python3 packaging/assets.py rpm-metadata "$STAGE/rpm-assets.toml"
cargo generate-rpm -p host --metadata-overwrite "$STAGE/rpm-assets.toml" --output "$OUT/"

echo "== .tar.gz"
TREE=$STAGE/tree
python3 packaging/assets.py stage "$TREE"
tar --owner=0 --group=0 --numeric-owner --sort=name -C "$TREE" -czf "$OUT/sfprocessor-$VERSION-$ARCH.tar.gz" .

rm -rf "$STAGE"
ls -l "$OUT"
