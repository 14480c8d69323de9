"""Fetch one remote file: a resumable HTTP transfer into ``<file>.part`` (retried, resumed with Range
requests), checked against the published size and sha256, renamed into place; zips unpacked."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from hstu_blair._version import __version__
from hstu_blair.data.remote_files import (
    CHUNK,
    ChecksumMismatchError,
    DownloadError,
    DownloadUnavailableError,
    RemoteFile,
    describe,
    read_records,
    record_verified,
    write_records,
)

log = logging.getLogger(__name__)

_RETRY_WAIT_S = 2.0  # first wait before resuming an interrupted transfer; doubles each retry


class _Interrupted(Exception):
    """The transfer stopped after it started (connection dropped, read timeout, 5xx): resumable."""


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
                for chunk in iter(lambda: fh.read(CHUNK), b""):
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


def fetch(file: RemoteFile, url: str, target: Path, progress: bool, retries: int, timeout: float) -> None:
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
            f"{describe(file.size, file.sha256)}, got {describe(part.size, digest)}; the bad file was "
            "removed. Run the download again; if this repeats, the server holds a different file"
        )
    os.replace(part.path, target)
    record_verified(file, target, url, digest)
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


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes START-END/TOTAL`` (or ``bytes */TOTAL``) -> (START, TOTAL); unknown parts are None."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value.removeprefix("bytes ").partition("/")
    start = span.split("-")[0]
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


class _Restart(Exception):
    """The server's answer does not fit the part (stale, or resumed at another byte): the part was
    restarted and the request must be sent again."""


def _transfer(file: RemoteFile, url: str, part: _PartFile, timeout: float) -> None:
    """One HTTP request appending to ``part``; raises ``_Interrupted`` when it may be resumed."""
    if file.size is not None and part.size > file.size:
        log.warning("%s is longer than the published file; restarting it", part.path)
        part.restart()
    if file.size is not None and part.size == file.size:
        return  # complete already: only verification is left
    _check_space(file, part)
    try:
        response = _open(file, url, part, timeout)
        if response is None:
            return  # nothing after our offset: complete
        with response:
            total = _expected_total(file, url, part, response)
            part.start_bar(total)
            _append_body(file, part, response)
    except _Restart:
        return _transfer(file, url, part, timeout)
    if total is not None and part.size < total:
        raise _Interrupted(f"connection closed after {part.size:,} of {total:,} bytes")


def _open(file: RemoteFile, url: str, part: _PartFile, timeout: float) -> http.client.HTTPResponse | None:
    """Send the request (a Range from the part's end when it has bytes); ``None``: the part is
    complete already. Raises ``_Restart`` (a stale part, restarted), ``_Interrupted`` (5xx),
    :class:`DownloadUnavailableError` (server unreachable) or :class:`DownloadError`."""
    headers = {"User-Agent": f"hstu-blair/{__version__} (python urllib)"}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and part.size:  # nothing after our offset: complete, or a stale part
            if _content_range(exc.headers.get("Content-Range"))[1] == part.size:
                return None
            log.warning("%s: server refused to resume; restarting", part.path.name)
            part.restart()
            raise _Restart from None
        if exc.code >= 500:
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:  # refused, DNS failure, connect timeout
        reason = getattr(exc, "reason", exc)
        raise DownloadUnavailableError(f"cannot download {file.path} from {url}: {reason}") from exc


def _expected_total(
    file: RemoteFile, url: str, part: _PartFile, response: http.client.HTTPResponse
) -> int | None:
    """The size the part will have when the response is read (the published size when the server
    gives none). Raises ``_Restart`` (resumed at another byte), :class:`ChecksumMismatchError` (the
    server's file has another size) or :class:`DownloadError` (an unexpected status)."""
    status = getattr(response, "status", None) or 200
    length = response.headers.get("Content-Length")
    if status == 206:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != part.size:
            log.warning("%s: server resumed at byte %s, not %d; restarting", part.path.name, start, part.size)
            part.restart()
            raise _Restart
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
    return total if total is not None else file.size  # to notice a transfer cut short


def _append_body(file: RemoteFile, part: _PartFile, response: http.client.HTTPResponse) -> None:
    """Append the response's bytes to the part; a dropped connection raises ``_Interrupted``."""
    with open(part.path, "ab") as fh:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (http.client.HTTPException, OSError) as exc:
                raise _Interrupted(f"connection lost: {exc!r}") from exc
            if not chunk:
                break
            fh.write(chunk)
            part.update(chunk)
            if file.size is not None and part.size > file.size:
                break  # longer than published: stop here, verification reports it


def _check_space(file: RemoteFile, part: _PartFile) -> None:
    if file.size is None:
        return
    needed, free = file.size - part.size, shutil.disk_usage(part.path.parent).free
    if needed > free:
        raise DownloadError(
            f"not enough disk space for {file.name} in {part.path.parent}: {needed:,} more bytes needed, "
            f"{free:,} free"
        )


def unpack(archive: Path) -> Path:
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
        records = read_records(dest)
        if records.pop(archive.name, None) is not None:
            write_records(dest, records)
        raise DownloadError(
            f"{archive} is not a valid zip archive ({exc}); it was removed, download it again"
        ) from exc
    os.replace(staging / folder.name if single else staging, folder)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: unpacked into %s", archive.name, folder)
    return folder
