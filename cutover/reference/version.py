"""Which cutover module ran: the package version plus a digest of the code that runs in production.

A version number alone does not change when a predicate is edited in a checkout; the digest of the
reference cutover's and the core's sources does, so a go/no-go can tell "the rehearsed cutover" from
"a cutover that merely carries the same version".
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path

from cutover import core, reference

DISTRIBUTION = "cutover-suite"


def package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


@cache
def source_digest() -> str:
    """SHA-256 (first 12 hex digits) over the reference cutover's and the core's Python sources."""
    digest = hashlib.sha256()
    for package in (core, reference):
        root = Path(package.__file__ or "").parent
        for path in sorted(root.glob("*.py")):
            digest.update(f"{package.__name__}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def module_version() -> str:
    """E.g. ``cutover-suite 0.1.0+src.1a2b3c4d5e6f``: what the evidence records as the bundled cutover."""
    return f"{DISTRIBUTION} {package_version()}+src.{source_digest()}"
