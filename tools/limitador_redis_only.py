#!/usr/bin/env python3
"""Unpack the pinned Limitador crate so it builds with Redis storage alone.

Limitador 0.14.0 (the newest release) does not compile with only its
`redis_storage` feature: two items the Redis keys need are behind
`disk_storage`, which pulls in RocksDB — 10-15 minutes of C++ on a 2-core
machine, for a store the fleet tests never use. This script takes the crate
(from cargo's download cache, else crates.io), checks it against the
checksum pinned below (the one Cargo.lock recorded), unpacks it to DEST and
widens those two `cfg`s to either storage. Nothing else changes: with both
features, as before, the same code is compiled.

usage: limitador_redis_only.py DEST
"""
import hashlib
import io
import pathlib
import shutil
import sys
import tarfile
import urllib.request

VERSION = "0.14.0"
SHA256 = "77e33de992fdc347850a81f1ed242cc702900a9651a2b5d044d153a2db5e2d1a"
URL = f"https://static.crates.io/crates/limitador/limitador-{VERSION}.crate"

EITHER_STORAGE = '#[cfg(any(feature = "redis_storage", feature = "disk_storage"))]'
# (file, text that must occur exactly once, its replacement)
EDITS = [
    ("src/storage/keys.rs",
     '#[cfg(feature = "disk_storage")]\npub mod bin {',
     EITHER_STORAGE + "\npub mod bin {"),
    ("src/counter.rs",
     '    #[cfg(feature = "disk_storage")]\n    pub(crate) fn variables_for_key',
     "    " + EITHER_STORAGE + "\n    pub(crate) fn variables_for_key"),
]


def crate_bytes():
    name = f"limitador-{VERSION}.crate"
    for cached in (pathlib.Path.home() / ".cargo/registry/cache").glob(f"*/{name}"):
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == SHA256:
            return data
    with urllib.request.urlopen(URL, timeout=120) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"{URL}: sha256 {digest}, expected {SHA256}")
    return data


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    dest = pathlib.Path(sys.argv[1])
    staging = dest.with_name(dest.name + ".next")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(crate_bytes()), mode="r:gz") as crate:
        for member in crate.getmembers():
            parts = pathlib.PurePosixPath(member.name).parts
            if not (member.isfile() or member.isdir()) or ".." in parts or member.name.startswith("/"):
                sys.exit(f"{URL}: unexpected archive member {member.name!r}")
        crate.extractall(staging)
    root = staging / f"limitador-{VERSION}"
    for relative, old, new in EDITS:
        path = root / relative
        text = path.read_text()
        if text.count(old) != 1:
            sys.exit(f"{path}: expected the text to edit exactly once, found {text.count(old)}")
        path.write_text(text.replace(old, new))
    shutil.rmtree(dest, ignore_errors=True)
    root.rename(dest)
    shutil.rmtree(staging)


if __name__ == "__main__":
    main()
