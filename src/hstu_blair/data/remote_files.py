"""What a download fetches (:class:`RemoteFile`), the errors it raises, and the per-folder record of
verified files (``<dest>/.hstu-blair-downloads``) that lets a second download skip them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hstu_blair.errors import HstuBlairError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
"""Bytes read at a time from a file or a response."""
RECORD_FILE = ".hstu-blair-downloads"
"""Per-folder JSON record of verified files; no data suffix, so loaders scanning the folder skip it."""


class DownloadError(HstuBlairError):
    """A file could not be downloaded, verified or unpacked."""


class DownloadUnavailableError(DownloadError):
    """The server could not be reached (offline, DNS failure, refused, timeout).

    The message says which files to fetch by hand, from which URL, and where to put them.
    """


class ChecksumMismatchError(DownloadError, ValueError):
    """A downloaded file's size or sha256 differs from the published one; the file was removed."""


class UnknownDownloadError(DownloadError, ValueError):
    """No download has this name; the message lists the valid names."""


@dataclass(frozen=True)
class RemoteFile:
    """One published file.

    Attributes:
        path: path below the base URL, e.g. ``benchmark/5core/rating_only/Video_Games.csv``.
        base_url: the official location the path is relative to.
        sha256: published sha256 (hex), or ``None`` where none is published (then only recorded).
        size: published size in bytes, or ``None`` where unknown.
        extract: unzip the file into the destination after it is verified.
    """

    path: str
    base_url: str
    sha256: str | None = None
    size: int | None = None
    extract: bool = False

    @property
    def name(self) -> str:
        """The local file name: the last component of ``path``."""
        return PurePosixPath(self.path).name

    def url(self, base_url: str | None = None) -> str:
        """The URL under ``base_url`` (a mirror) or, by default, under the official base URL."""
        return (base_url or self.base_url).rstrip("/") + "/" + self.path.lstrip("/")


def sha256_of(path: Path) -> str:
    """The sha256 (hex) of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            sha.update(chunk)
    return sha.hexdigest()


def read_records(dest: Path) -> dict[str, dict[str, object]]:
    """The verified files recorded in ``dest`` by name (``{}`` without a valid record file)."""
    path = dest / RECORD_FILE
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["files"])
    except (ValueError, KeyError, TypeError):
        log.warning("%s is not a valid download record; present files will be checked again", path)
        return {}


def write_records(dest: Path, records: dict[str, dict[str, object]]) -> None:
    """Replace ``dest``'s record file (atomically) with ``records``."""
    tmp = dest / (RECORD_FILE + ".tmp")
    tmp.write_text(json.dumps({"files": records}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, dest / RECORD_FILE)


def record_verified(file: RemoteFile, target: Path, url: str, digest: str) -> None:
    """Record ``target`` as verified: its url, sha256, size and mtime."""
    records = read_records(target.parent)
    stat = target.stat()
    records[target.name] = {
        "url": url,
        "sha256": digest,
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "checked_against": "published sha256" if file.sha256 else "nothing (no sha256 published)",
    }
    write_records(target.parent, records)


def already_verified(file: RemoteFile, target: Path, url: str) -> bool:
    """True when ``target`` exists and matches the published size/sha256 (or, without any, exists)."""
    if not target.is_file():
        return False
    stat = target.stat()
    if file.size is not None and stat.st_size != file.size:
        log.warning("%s has %d bytes, expected %d: downloading it again", target, stat.st_size, file.size)
        return False
    record = read_records(target.parent).get(target.name, {})
    unchanged = record.get("bytes") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns
    if unchanged and file.sha256 in (None, record.get("sha256")):
        log.info("%s: already downloaded and verified", target)
        return True
    log.info("%s is present; checking its sha256", target)
    digest = sha256_of(target)
    if file.sha256 is not None and digest != file.sha256:
        log.warning("%s has sha256 %s, expected %s: downloading it again", target, digest, file.sha256)
        return False
    record_verified(file, target, url, digest)
    return True


def describe(size: int | None, sha256: str | None) -> str:
    """``1,234 bytes, sha256 ab12...`` for messages (``unknown`` where not known)."""
    size_text = "unknown size" if size is None else f"{size:,} bytes"
    return f"{size_text}, sha256 {sha256 or 'unknown'}"
