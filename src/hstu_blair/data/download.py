"""Fetch the published dataset files: resumable HTTP downloads checked against shipped sha256 sums.

A *download* is a named list of remote files (``amazon2023:Video_Games``, ``steam``, ``ml-1m``...).
Each file is fetched with the standard library into ``<dest>/<file>.part`` (resumed with a Range
request when a partial file is there), checked against its official size and sha256 (Amazon Reviews
2023 publishes them, shipped in ``resources/amazon2023_files.tsv``; Steam and MovieLens do not, so
their sha256 is only computed and recorded) and renamed into place. Files land flat in ``dest`` under
their published names, where ``prepare`` looks for them; MovieLens zips are also extracted there.
``<dest>/.hstu-blair-downloads`` (JSON) records each verified file (url, sha256, bytes, mtime), so
a second call skips it without reading it again. Use one folder per dataset: the Amazon loader
refuses a folder holding two categories.

This module holds the catalogue of named downloads and the entry points; one file's transfer is in
:mod:`.fetch`, :class:`~.remote_files.RemoteFile`, the errors and the record in :mod:`.remote_files`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from hstu_blair.data.fetch import fetch, unpack
from hstu_blair.data.remote_files import (
    DownloadUnavailableError,
    RemoteFile,
    UnknownDownloadError,
    already_verified,
    describe,
)
from hstu_blair.errors import DataFormatError

log = logging.getLogger(__name__)

AMAZON2023_BASE_URL = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/"
STEAM_BASE_URL = "https://cseweb.ucsd.edu/~wckang/"
MOVIELENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
BASE_URL_ENV = "HSTU_BLAIR_DOWNLOAD_BASE_URL"
"""Environment variable that replaces every official base URL (a mirror); paths stay the same."""


MOVIELENS_SETS = ("ml-100k", "ml-1m", "ml-20m", "ml-latest-small", "ml-latest")


@dataclass(frozen=True)
class Download:
    """A named set of files, e.g. the 5-core ratings plus metadata of one Amazon category.

    Attributes:
        name: the name given to :func:`download`.
        description: one line for listings.
        source: the ``prepare`` source that reads these files.
        files: the files, in download order.
    """

    name: str
    description: str
    source: str
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int | None:
        """Total bytes, or ``None`` when a file's size is not published."""
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]


@functools.cache
def amazon2023_checksums() -> dict[str, tuple[str, int]]:
    """Published sha256 and size of every official Amazon Reviews 2023 file.

    Returns:
        ``path -> (sha256 hex, bytes)``, read from the shipped ``resources/amazon2023_files.tsv``
        (lines ``path<TAB>sha256:<hex><TAB>bytes``).
    """
    ref = resources.files("hstu_blair").joinpath("resources", "amazon2023_files.tsv")
    sums: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(ref.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].startswith("sha256:") or not parts[2].isdigit():
            raise DataFormatError(str(ref), "expected 'path<TAB>sha256:<hex><TAB>bytes'", line=number)
        sums[parts[0]] = (parts[1].removeprefix("sha256:"), int(parts[2]))
    return sums


@functools.cache
def _catalogue() -> dict[str, Download]:
    sums = amazon2023_checksums()

    def amazon(path: str) -> RemoteFile:
        return RemoteFile(path, AMAZON2023_BASE_URL, *sums[path])

    five_core, reviews = "benchmark/5core/rating_only/", "raw/review_categories/"
    entries: dict[str, Download] = {}
    for path in sorted(p for p in sums if p.startswith(five_core)):
        category = path.removeprefix(five_core).removesuffix(".csv")
        name = f"amazon2023:{category}"
        files = (amazon(path), amazon(f"raw/meta_categories/meta_{category}.jsonl"))
        description = f"Amazon Reviews 2023 {category}: 5-core ratings (rating_only CSV) + item metadata"
        entries[name] = Download(name, description, "amazon2023", files)
    for path in sorted(p for p in sums if p.startswith(reviews)):
        category = path.removeprefix(reviews).removesuffix(".jsonl")
        name = f"amazon2023:{category}:reviews"
        description = f"Amazon Reviews 2023 {category}: all raw reviews (JSONL, with text)"
        entries[name] = Download(name, description, "amazon2023", (amazon(path),))
    steam = tuple(RemoteFile(p, STEAM_BASE_URL) for p in ("steam_reviews.json.gz", "steam_games.json.gz"))
    description = "UCSD Steam reviews + game metadata (Kang & McAuley 2018)"
    entries["steam"] = Download("steam", description, "steam", steam)
    for name in MOVIELENS_SETS:
        archive = (RemoteFile(f"{name}.zip", MOVIELENS_BASE_URL, extract=True),)
        description = f"MovieLens {name.removeprefix('ml-')} (zip, unpacked)"
        entries[name] = Download(name, description, "movielens", archive)
    return entries


def list_downloads() -> list[Download]:
    """Every named download, Amazon categories first, then Steam and MovieLens."""
    return list(_catalogue().values())


def get_download(name: str) -> Download:
    """The download called ``name`` (case-insensitive).

    Raises:
        UnknownDownloadError: no such name; the message lists the valid ones.
    """
    by_lower = {key.lower(): entry for key, entry in _catalogue().items()}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    names = list(_catalogue())
    five_core = [n.split(":")[1] for n in names if n.count(":") == 1]
    raw_only = [n.split(":")[1] for n in names if n.endswith(":reviews") and n.split(":")[1] not in five_core]
    others = [n for n in names if not n.startswith("amazon2023:")]
    raise UnknownDownloadError(
        f"unknown download {name!r}; valid names: {', '.join(others)}, "
        f"amazon2023:<Category> and amazon2023:<Category>:reviews with <Category> one of "
        f"{', '.join(five_core)} (':reviews' only: {', '.join(raw_only)})"
    )


def download(name: str, dest: Path, base_url: str | None = None, progress: bool = True) -> list[Path]:
    """Download, verify and (for zips) unpack the files of a named download into ``dest``.

    Args:
        name: a name from :func:`list_downloads`, e.g. ``amazon2023:Video_Games``, ``steam``, ``ml-1m``.
        dest: destination folder (created); files keep their published names, flat.
        base_url: mirror replacing the official base URL (default: ``$HSTU_BLAIR_DOWNLOAD_BASE_URL``,
            else the official one); each file's relative path is kept.
        progress: show a progress bar per file.

    Returns:
        The inputs for ``prepare``: each downloaded file, with zip archives replaced by their
        unpacked folder.

    Raises:
        UnknownDownloadError: ``name`` is not a known download.
        DownloadUnavailableError: the server is unreachable; says what to fetch by hand and where.
        ChecksumMismatchError: a file's size or sha256 differs from the published one.
        DownloadError: any other failure (HTTP error, disk full, bad zip).
    """
    return download_files(get_download(name).files, dest, base_url=base_url, progress=progress)


def download_files(
    files: Sequence[RemoteFile],
    dest: Path,
    base_url: str | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30.0,
) -> list[Path]:
    """Download and verify ``files`` into ``dest``; files already there and verified are skipped.

    Args:
        files: what to fetch (see :class:`RemoteFile`; tests and mirrors may build their own).
        dest: destination folder (created).
        base_url: mirror base URL; ``None`` reads ``$HSTU_BLAIR_DOWNLOAD_BASE_URL``, else official.
        progress: show a progress bar per file (bytes, rate, ETA).
        retries: how many times an interrupted transfer is resumed before giving up (the
            ``.part`` file is kept, so a later call resumes it too).
        timeout: seconds to wait for the connection and for each read.

    Returns:
        One path per file: the file, or for an archive its unpacked folder.

    Raises:
        See :func:`download`.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base_url = base_url or os.environ.get(BASE_URL_ENV) or None
    out: list[Path] = []
    for i, file in enumerate(files):
        target = dest / file.name
        unpacked = dest / PurePosixPath(file.name).stem
        if file.extract and not target.exists() and unpacked.is_dir():
            log.info("%s: already unpacked (archive not kept)", unpacked)
            out.append(unpacked)
            continue
        if not already_verified(file, target, file.url(base_url)):
            try:
                fetch(file, file.url(base_url), target, progress, retries, timeout)
            except DownloadUnavailableError as exc:
                raise DownloadUnavailableError(_manual_hint(str(exc), files[i:], dest, base_url)) from exc
        out.append(unpack(target) if file.extract else target)
    return out


def _manual_hint(reason: str, files: Sequence[RemoteFile], dest: Path, base_url: str | None) -> str:
    lines = [
        f"{reason}.",
        "If this machine is offline, download these files elsewhere and place them as shown; "
        "running the download again then only verifies them, and `hstu-blair prepare` finds them there:",
    ]
    for file in files:
        target = dest / file.name
        if target.exists():
            continue
        line = f"  {file.url(base_url)} -> {target}"
        if file.size is not None or file.sha256:
            line += f" ({describe(file.size, file.sha256)})"
        if file.extract:
            line += f", then unzip it into {dest}"
        lines.append(line)
    return "\n".join(lines)
