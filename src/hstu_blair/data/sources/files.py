"""Files (plain or gzip) and their lines, streamed or in blocks; a missing, empty or corrupt file
names itself in the :class:`~hstu_blair.errors.DataFormatError` raised."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from hstu_blair.errors import DataFormatError


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes (whatever its name says)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a plain or gzip-compressed file for reading bytes; a missing file names itself."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataFormatError(path, "file is empty")
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # noqa: SIM115


def read_bytes(path: str | Path) -> bytes:
    """Whole file content, decompressed if it is gzip (corrupt or truncated gzip data names the file)."""
    with open_binary(path) as fh:
        try:
            data = fh.read()
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataFormatError(path, f"corrupt or truncated gzip data ({exc})") from None
    if not data.strip():
        raise DataFormatError(path, "file is empty")
    return data


def numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line_number, raw_line)`` of the non-blank lines of a plain or gzip file (1-based numbers)."""
    number = 0
    with open_binary(path) as fh:
        try:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    yield number, line
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataFormatError(path, f"corrupt or truncated gzip data ({exc})", line=number + 1) from None


def first_line(path: Path) -> bytes:
    """The first non-blank line of a plain or gzip file (``b""`` when there is none)."""
    lines = numbered_lines(path)
    try:
        return next(lines, (0, b""))[1]
    finally:
        lines.close()


def line_blocks(path: Path, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """``(number of its first line, bytes)`` of consecutive blocks of whole lines of a file."""
    number = 1
    carry = b""
    with open_binary(path) as fh:
        while chunk := fh.read(block_bytes):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            block, carry = data[:cut], data[cut:]
            yield number, block
            number += block.count(b"\n")
    if carry:
        yield number, carry


def decoded_lines(block: bytes, first_line: int) -> Iterator[tuple[int, str | None, str]]:
    """``(line number, text, "")`` for the non-blank lines of ``block``, in order.

    A line that is not valid UTF-8 comes as ``(line number, None, what is wrong)``.
    """
    try:
        lines: list[str] | list[bytes] = block.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines = block.split(b"\n")
    for offset, line in enumerate(lines):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield first_line + offset, None, f"not valid utf-8 text ({exc.reason} at byte {exc.start})"
                continue
        line = line.rstrip("\r\n")
        if line.strip():
            yield first_line + offset, line, ""
