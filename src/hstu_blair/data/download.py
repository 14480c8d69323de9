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
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from hstu_blair._version import __version__
from hstu_blair.errors import DataFormatError, HstuBlairError

log = logging.getLogger(__name__)

AMAZON2023_BASE_URL = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/"
STEAM_BASE_URL = "https://cseweb.ucsd.edu/~wckang/"
MOVIELENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
BASE_URL_ENV = "HSTU_BLAIR_DOWNLOAD_BASE_URL"
"""Environment variable that replaces every official base URL (a mirror); paths stay the same."""
RECORD_FILE = ".hstu-blair-downloads"
"""Per-folder JSON record of verified files; no data suffix, so loaders scanning the folder skip it."""
MOVIELENS_SETS = ("ml-100k", "ml-1m", "ml-20m", "ml-latest-small", "ml-latest")

_CHUNK = 1 << 20
_RETRY_WAIT_S = 2.0  # first wait before resuming an interrupted transfer; doubles each retry


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


class _Interrupted(Exception):
    """The transfer stopped after it started (connection dropped, read timeout, 5xx): resumable."""


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
        if not _already_verified(file, target, file.url(base_url)):
            try:
                _fetch(file, file.url(base_url), target, progress, retries, timeout)
            except DownloadUnavailableError as exc:
                raise DownloadUnavailableError(_manual_hint(str(exc), files[i:], dest, base_url)) from exc
        out.append(_unpack(target) if file.extract else target)
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
            line += f" ({_describe(file.size, file.sha256)})"
        if file.extract:
            line += f", then unzip it into {dest}"
        lines.append(line)
    return "\n".join(lines)


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _read_records(dest: Path) -> dict[str, dict[str, object]]:
    path = dest / RECORD_FILE
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["files"])
    except (ValueError, KeyError, TypeError):
        log.warning("%s is not a valid download record; present files will be checked again", path)
        return {}


def _write_records(dest: Path, records: dict[str, dict[str, object]]) -> None:
    tmp = dest / (RECORD_FILE + ".tmp")
    tmp.write_text(json.dumps({"files": records}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, dest / RECORD_FILE)


def _record(file: RemoteFile, target: Path, url: str, digest: str) -> None:
    records = _read_records(target.parent)
    stat = target.stat()
    records[target.name] = {
        "url": url,
        "sha256": digest,
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "checked_against": "published sha256" if file.sha256 else "nothing (no sha256 published)",
    }
    _write_records(target.parent, records)


def _already_verified(file: RemoteFile, target: Path, url: str) -> bool:
    """True when ``target`` exists and matches the published size/sha256 (or, without any, exists)."""
    if not target.is_file():
        return False
    stat = target.stat()
    if file.size is not None and stat.st_size != file.size:
        log.warning("%s has %d bytes, expected %d: downloading it again", target, stat.st_size, file.size)
        return False
    record = _read_records(target.parent).get(target.name, {})
    unchanged = record.get("bytes") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns
    if unchanged and file.sha256 in (None, record.get("sha256")):
        log.info("%s: already downloaded and verified", target)
        return True
    log.info("%s is present; checking its sha256", target)
    digest = _sha256_of(target)
    if file.sha256 is not None and digest != file.sha256:
        log.warning("%s has sha256 %s, expected %s: downloading it again", target, digest, file.sha256)
        return False
    _record(file, target, url, digest)
    return True


class _PartFile:
    """The ``<file>.part`` being written, a running sha256 of its bytes, and its progress bar."""

    def __init__(self, path: Path, progress: bool) -> None:
        self.path = path
        self.sha = hashlib.sha256()
        self.size = 0
        self.progress = progress
        self.bar: tqdm | None = None  # created when the first response arrives
        if path.exists():
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    self.update(chunk)

    def update(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        self.size += len(chunk)
        if self.bar is not None:
            self.bar.update(len(chunk))

    def restart(self) -> None:
        self.path.write_bytes(b"")
        self.sha = hashlib.sha256()
        self.size = 0

    def start_bar(self, total: int | None) -> None:
        if self.bar is None:
            name = self.path.name.removesuffix(".part")
            self.bar = tqdm(
                desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=not self.progress
            )
        self.bar.reset(total=total)
        self.bar.initial = self.bar.n = self.bar.last_print_n = self.size  # resumed bytes: not in the rate
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.path.exists() and self.size == 0:
            self.path.unlink()  # leave no empty .part behind


def _fetch(file: RemoteFile, url: str, target: Path, progress: bool, retries: int, timeout: float) -> None:
    """Transfer ``url`` into ``<target>.part`` (resuming), verify it, rename it to ``target``."""
    part = _PartFile(target.with_name(target.name + ".part"), progress)
    resumed = part.size > 0
    if resumed:
        log.info("%s: resuming after %d bytes already in %s", target.name, part.size, part.path)
    try:
        _transfer_with_retries(file, url, part, retries, timeout)
        if resumed and not _matches(file, part):
            log.warning("%s: the resumed file does not match; downloading it again from the start", target)
            part.restart()
            _transfer_with_retries(file, url, part, retries, timeout)
        part.path.touch()  # a published file of 0 bytes gets no write
    finally:
        part.close()
    digest = part.sha.hexdigest()
    if not _matches(file, part):
        part.path.unlink()
        raise ChecksumMismatchError(
            f"{target.name} downloaded from {url} does not match the published file: expected "
            f"{_describe(file.size, file.sha256)}, got {_describe(part.size, digest)}; the bad file was "
            "removed. Run the download again; if this repeats, the server holds a different file"
        )
    os.replace(part.path, target)
    _record(file, target, url, digest)
    log.info("%s: %d bytes, sha256 %s%s", target, part.size, digest, " (verified)" if file.sha256 else "")


def _matches(file: RemoteFile, part: _PartFile) -> bool:
    """True when the part has the published size and sha256 (each checked only where published)."""
    size_ok = file.size is None or part.size == file.size
    return size_ok and (file.sha256 is None or part.sha.hexdigest() == file.sha256)


def _transfer_with_retries(file: RemoteFile, url: str, part: _PartFile, retries: int, timeout: float) -> None:
    for attempt in range(retries + 1):
        try:
            _transfer(file, url, part, timeout)
            return
        except _Interrupted as exc:
            if attempt == retries:
                raise DownloadError(
                    f"downloading {url} stopped after {part.size:,} bytes ({exc}); the partial file "
                    f"{part.path} is kept and the next download resumes from it"
                ) from exc
            wait = _RETRY_WAIT_S * 2**attempt
            log.warning("%s: %s; resuming after %d bytes in %.0fs", file.name, exc, part.size, wait)
            time.sleep(wait)


def _describe(size: int | None, sha256: str | None) -> str:
    size_text = "unknown size" if size is None else f"{size:,} bytes"
    return f"{size_text}, sha256 {sha256 or 'unknown'}"


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes START-END/TOTAL`` (or ``bytes */TOTAL``) -> (START, TOTAL); unknown parts are None."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value.removeprefix("bytes ").partition("/")
    start = span.split("-")[0]
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


def _transfer(file: RemoteFile, url: str, part: _PartFile, timeout: float) -> None:
    """One HTTP request appending to ``part``; raises ``_Interrupted`` when it may be resumed."""
    if file.size is not None and part.size > file.size:
        log.warning("%s is longer than the published file; restarting it", part.path)
        part.restart()
    if file.size is not None and part.size == file.size:
        return  # complete already: only verification is left
    _check_space(file, part)
    headers = {"User-Agent": f"hstu-blair/{__version__} (python urllib)"}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and part.size:  # nothing after our offset: complete, or a stale part
            if _content_range(exc.headers.get("Content-Range"))[1] == part.size:
                return
            log.warning("%s: server refused to resume; restarting", part.path.name)
            part.restart()
            return _transfer(file, url, part, timeout)
        if exc.code >= 500:
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:  # refused, DNS failure, connect timeout
        reason = getattr(exc, "reason", exc)
        raise DownloadUnavailableError(f"cannot download {file.path} from {url}: {reason}") from exc

    with response:
        status = getattr(response, "status", None) or 200
        length = response.headers.get("Content-Length")
        if status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != part.size:
                log.warning(
                    "%s: server resumed at byte %s, not %d; restarting", part.path.name, start, part.size
                )
                part.restart()
                response.close()
                return _transfer(file, url, part, timeout)
        elif status == 200:
            if part.size:
                log.info("%s: server ignored the Range request; restarting from byte 0", part.path.name)
                part.restart()
            total = int(length) if length and length.isdigit() else None
        else:
            raise DownloadError(f"downloading {url} failed: unexpected HTTP status {status}")
        if file.size is not None and total is not None and total != file.size:
            part.path.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{file.name} at {url} has {total:,} bytes, expected {file.size:,} (sha256 {file.sha256}); "
                "nothing was kept: the server holds a different file"
            )
        total = total if total is not None else file.size  # to notice a transfer cut short
        part.start_bar(total)
        with open(part.path, "ab") as fh:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (http.client.HTTPException, OSError) as exc:
                    raise _Interrupted(f"connection lost: {exc!r}") from exc
                if not chunk:
                    break
                fh.write(chunk)
                part.update(chunk)
                if file.size is not None and part.size > file.size:
                    break  # longer than published: stop here, verification reports it
    if total is not None and part.size < total:
        raise _Interrupted(f"connection closed after {part.size:,} of {total:,} bytes")


def _check_space(file: RemoteFile, part: _PartFile) -> None:
    if file.size is None:
        return
    needed, free = file.size - part.size, shutil.disk_usage(part.path.parent).free
    if needed > free:
        raise DownloadError(
            f"not enough disk space for {file.name} in {part.path.parent}: {needed:,} more bytes needed, "
            f"{free:,} free"
        )


def _unpack(archive: Path) -> Path:
    """Unzip ``archive`` next to itself (atomically, once); return the unpacked folder."""
    dest = archive.parent
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                pure = PurePosixPath(name)
                if pure.is_absolute() or ".." in pure.parts:
                    raise DownloadError(f"{archive}: refusing to unpack member {name!r} outside the folder")
            tops = {PurePosixPath(n).parts[0] for n in names if n.strip("/")}
            single = len(tops) == 1 and all("/" in n for n in names)
            folder = dest / (tops.pop() if single else archive.stem)
            if folder.is_dir():
                return folder
            staging = dest / f".{archive.name}.unpacking"
            shutil.rmtree(staging, ignore_errors=True)
            zf.extractall(staging)
    except zipfile.BadZipFile as exc:
        archive.unlink()
        records = _read_records(dest)
        if records.pop(archive.name, None) is not None:
            _write_records(dest, records)
        raise DownloadError(
            f"{archive} is not a valid zip archive ({exc}); it was removed, download it again"
        ) from exc
    os.replace(staging / folder.name if single else staging, folder)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: unpacked into %s", archive.name, folder)
    return folder
