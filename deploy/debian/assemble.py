#!/usr/bin/env python3
"""Builds .deb packages from the `[package.metadata.deb]` tables (cargo-deb's
format) with plain dpkg-deb, so that packaging needs nothing beyond what a
Debian machine has. deploy/package.sh runs it; see there for why not cargo-deb.

Reads `cargo metadata --no-deps --format-version 1` from --metadata and
understands the subset of cargo-deb's keys this workspace uses: name,
maintainer, copyright, section, priority, depends ($auto), extended-description,
assets, conf-files, maintainer-scripts and systemd-units (enable/start).
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

DEBHELPER = "#DEBHELPER#"
SCRIPTS = ("preinst", "postinst", "prerm", "postrm")
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path")


def fail(message):
    print(f"assemble.py: {message}", file=sys.stderr)
    sys.exit(1)


def profile_dir(profile):
    return "debug" if profile in ("dev", "debug", "test") else profile


def source_path(src, manifest_dir, target_dir, profile):
    # As in cargo-deb: `target/release/x` means the binary of the profile built.
    if src.startswith("target/release/"):
        return os.path.join(target_dir, profile_dir(profile), src[len("target/release/"):])
    return os.path.normpath(os.path.join(manifest_dir, src))


def auto_depends(binaries):
    """What `$auto` resolves to: the newest glibc symbol version the binaries
    use, and libgcc_s when they link it (Rust's unwinder). A byte scan of the
    ELF's version strings, so dpkg-dev need not be installed. Binaries that
    link neither (the agent, static against musl) depend on nothing."""
    glibc = (2, 2, 5)
    links_glibc = False
    gcc = False
    for path in binaries:
        with open(path, "rb") as f:
            data = f.read()
        for m in re.finditer(rb"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?\x00", data):
            version = tuple(int(g or 0) for g in m.groups())
            glibc = max(glibc, version)
            links_glibc = True
        links_glibc = links_glibc or b"libc.so.6\x00" in data
        gcc = gcc or b"libgcc_s.so.1\x00" in data
    deps = []
    if links_glibc:
        version = ".".join(str(p) for p in (glibc if glibc[2] else glibc[:2]))
        deps.append(f"libc6 (>= {version})")
    if gcc:
        deps.append("libgcc-s1 (>= 4.2)")
    return deps


def systemd_snippets(units, enable, start):
    """The maintainer-script fragments dh_installsystemd (and cargo-deb) put at
    #DEBHELPER#. start = false: never start on installation (the package needs
    configuration first), but restart a unit that is already running on upgrade."""
    quoted = " ".join(f"'{u}'" for u in units)
    post = []
    if enable:
        post.append(f"""if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
\tfor unit in {quoted}; do
\t\tdeb-systemd-helper unmask "$unit" >/dev/null || true
\t\t# was-enabled is true on a first installation, so new installs are enabled.
\t\tif deb-systemd-helper --quiet was-enabled "$unit"; then
\t\t\tdeb-systemd-helper enable "$unit" >/dev/null || true
\t\telse
\t\t\tdeb-systemd-helper update-state "$unit" >/dev/null || true
\t\tfi
\tdone
fi""")
    post.append(f"""if [ -d /run/systemd/system ]; then
\tsystemctl --system daemon-reload >/dev/null || true
\tif [ -n "$2" ]; then
\t\t# An upgrade: restart what was running, start nothing new.
\t\tdeb-systemd-invoke try-restart {quoted} >/dev/null || true
\tfi
fi""")
    if start:
        post.append(f"""if [ -d /run/systemd/system ] && [ "$1" = configure ]; then
\tdeb-systemd-invoke start {quoted} >/dev/null || true
fi""")
    prerm = f"""if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
\tdeb-systemd-invoke stop {quoted} >/dev/null || true
fi"""
    postrm = f"""if [ -d /run/systemd/system ]; then
\tsystemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = remove ] && [ -x /usr/bin/deb-systemd-helper ]; then
\tdeb-systemd-helper mask {quoted} >/dev/null || true
fi
if [ "$1" = purge ] && [ -x /usr/bin/deb-systemd-helper ]; then
\tdeb-systemd-helper purge {quoted} >/dev/null || true
\tdeb-systemd-helper unmask {quoted} >/dev/null || true
fi"""
    return {"postinst": "\n".join(post), "prerm": prerm, "postrm": postrm}


def description(package, meta):
    summary = package.get("description") or package["name"]
    long = meta.get("extended-description", "").strip()
    lines = [summary]
    for para in long.split("\n\n") if long else []:
        if len(lines) > 1:
            lines.append(" .")
        lines.extend(" " + line for line in textwrap.wrap(" ".join(para.split()), 76))
    return "\n".join(lines)


def build(package, meta, target_dir, profile, out_dir, arch, compression):
    manifest_dir = os.path.dirname(package["manifest_path"])
    name = meta.get("name", package["name"])
    version = f"{package['version']}-{meta.get('revision', '1')}"
    stage = tempfile.mkdtemp(prefix=f"{name}-deb-")
    os.chmod(stage, 0o755)  # becomes the installed system's `/`
    try:
        binaries = []
        for src, dest, mode in meta.get("assets", []):
            path = source_path(src, manifest_dir, target_dir, profile)
            if not os.path.isfile(path):
                fail(f"{name}: asset {src} not found at {path} (built with --profile {profile}?)")
            dest = dest.lstrip("/")
            if dest.endswith("/"):
                dest += os.path.basename(path)
            full = os.path.join(stage, dest)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            shutil.copyfile(path, full)
            os.chmod(full, int(mode, 8))
            if dest.startswith("usr/bin/") or dest.startswith("usr/sbin/"):
                binaries.append(full)

        units = []
        systemd = meta.get("systemd-units")
        if systemd:
            unit_dir = os.path.join(manifest_dir, systemd.get("unit-scripts", "."))
            base = systemd.get("unit-name", name)
            for suffix in UNIT_SUFFIXES:
                path = os.path.join(unit_dir, base + suffix)
                if os.path.isfile(path):
                    dest = os.path.join(stage, "lib/systemd/system", base + suffix)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    shutil.copyfile(path, dest)
                    os.chmod(dest, 0o644)
                    units.append(base + suffix)
            if not units:
                fail(f"{name}: systemd-units names no unit file in {unit_dir}")

        control_dir = os.path.join(stage, "DEBIAN")
        os.makedirs(control_dir)
        snippets = systemd_snippets(units, systemd.get("enable", True), systemd.get("start", True)) if units else {}
        scripts_dir = meta.get("maintainer-scripts")
        for script in SCRIPTS:
            text = None
            if scripts_dir:
                path = os.path.join(manifest_dir, scripts_dir, script)
                if os.path.isfile(path):
                    with open(path, encoding="utf-8") as f:
                        text = f.read()
            snippet = snippets.get(script, "")
            if text is None and snippet:
                text = f"#!/bin/sh\nset -e\n{DEBHELPER}\nexit 0\n"
            if text is None:
                continue
            # The token alone on a line, as debhelper and cargo-deb take it.
            text = re.sub(
                rf"^{DEBHELPER}$",
                lambda _: f"# systemd units (deploy/debian/assemble.py)\n{snippet}",
                text,
                flags=re.M,
            )
            dest = os.path.join(control_dir, script)
            with open(dest, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(dest, 0o755)

        conffiles = meta.get("conf-files", [])
        for conf in conffiles:
            if not os.path.isfile(os.path.join(stage, conf.lstrip("/"))):
                fail(f"{name}: conf-file {conf} is not among the assets")
        if conffiles:
            with open(os.path.join(control_dir, "conffiles"), "w", encoding="utf-8") as f:
                f.write("".join(c + "\n" for c in conffiles))

        depends = []
        for dep in (d.strip() for d in meta.get("depends", "$auto").split(",")):
            depends.extend(auto_depends(binaries) if dep == "$auto" else [dep] if dep else [])

        size_kib = 0
        sums = []
        for dirpath, dirnames, filenames in os.walk(stage):
            dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) != control_dir)
            for file in sorted(filenames):
                full = os.path.join(dirpath, file)
                size_kib += (os.path.getsize(full) + 1023) // 1024
                with open(full, "rb") as f:
                    digest = hashlib.md5(f.read()).hexdigest()
                sums.append(f"{digest}  {os.path.relpath(full, stage)}\n")
        with open(os.path.join(control_dir, "md5sums"), "w", encoding="utf-8") as f:
            f.writelines(sums)

        fields = [
            ("Package", name),
            ("Version", version),
            ("Architecture", arch),
            ("Maintainer", meta.get("maintainer", "")),
            ("Installed-Size", str(size_kib)),
            ("Depends", ", ".join(depends)),
            ("Section", meta.get("section", "utils")),
            ("Priority", meta.get("priority", "optional")),
            ("Description", description(package, meta)),
        ]
        with open(os.path.join(control_dir, "control"), "w", encoding="utf-8") as f:
            f.writelines(f"{k}: {v}\n" for k, v in fields if v)

        os.makedirs(out_dir, exist_ok=True)
        deb = os.path.join(out_dir, f"{name}_{version}_{arch}.deb")
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", stage, deb],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(deb)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metadata", required=True, help="cargo metadata JSON file")
    parser.add_argument("--profile", default="release")
    parser.add_argument(
        "--package-profile",
        action="append",
        default=[],
        metavar="PACKAGE=PROFILE",
        help="the profile one package was built with, if not --profile",
    )
    parser.add_argument("--target-dir", required=True)
    parser.add_argument("--out", required=True)
    # Tests package unoptimized 100+ MB binaries: xz would take minutes there.
    parser.add_argument("--compression", default="xz", choices=["xz", "gzip", "zstd", "none"])
    parser.add_argument("packages", nargs="+", help="cargo package names")
    args = parser.parse_args()
    with open(args.metadata, encoding="utf-8") as f:
        metadata = json.load(f)
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    ).stdout.strip()
    by_name = {p["name"]: p for p in metadata["packages"]}
    profiles = dict(item.split("=", 1) for item in args.package_profile)
    for wanted in args.packages:
        package = by_name.get(wanted)
        if package is None:
            fail(f"no package {wanted} in the workspace")
        meta = (package.get("metadata") or {}).get("deb")
        if meta is None:
            fail(f"{wanted} has no [package.metadata.deb] table")
        profile = profiles.get(wanted, args.profile)
        build(package, meta, args.target_dir, profile, args.out, arch, args.compression)


if __name__ == "__main__":
    main()
