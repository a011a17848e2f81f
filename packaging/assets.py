#!/usr/bin/env python3
"""The installed-file list of the packages, read from host/Cargo.toml's
[package.metadata.deb] assets (the one list) plus the systemd unit cargo-deb adds itself.

  assets.py list                  prints "source<TAB>dest<TAB>mode" per installed file
  assets.py rpm-metadata FILE     writes the [package.metadata.generate-rpm] assets as TOML
  assets.py stage DIR             copies every file into DIR (the .tar.gz tree)
"""
import os
import shutil
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, "host")
UNIT = ("../packaging/systemd/sysflow-processor.service", "usr/lib/systemd/system/", "644")


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")


def source_path(source):
    """cargo-deb's rule: target/release/... is the build output, other paths are relative to host/."""
    stripped = os.environ.get("PACKAGE_BIN_DIR")
    if source.startswith("target/release/") and stripped:
        # build.sh passes stripped copies of the binaries (cargo-deb strips its own; the rpm
        # and tar tools do not).
        return os.path.join(stripped, os.path.basename(source))
    if source.startswith("target/"):
        return os.path.join(target_dir(), source[len("target/"):])
    return os.path.normpath(os.path.join(HOST, source))


def assets():
    with open(os.path.join(HOST, "Cargo.toml"), "rb") as f:
        meta = tomllib.load(f)["package"]["metadata"]["deb"]
    out = []
    for source, dest, mode in meta["assets"] + [list(UNIT)]:
        if dest.endswith("/"):
            dest += os.path.basename(source)
        out.append((source_path(source), "/" + dest.lstrip("/"), mode))
    return out


def toml_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rpm_metadata(path):
    lines = ["assets = ["]
    for source, dest, mode in assets():
        extra = ""
        if dest.startswith("/etc/"):
            extra = ', config = "noreplace"'
        elif dest.startswith("/usr/share/doc/"):
            extra = ", doc = true"
        lines.append(f"    {{ source = {toml_string(source)}, dest = {toml_string(dest)}, mode = \"{mode}\"{extra} }},")
    lines.append("]")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def stage(dir):
    for source, dest, mode in assets():
        target = os.path.join(dir, dest.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)
        os.chmod(target, int(mode, 8))


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "list":
        for source, dest, mode in assets():
            print(f"{source}\t{dest}\t{mode}")
    elif len(sys.argv) == 3 and sys.argv[1] == "rpm-metadata":
        rpm_metadata(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "stage":
        stage(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
