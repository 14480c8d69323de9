"""The durable log of items added at run time: ``RUN_DIR/added_items.jsonl``, append-only.

One JSON object per line, one line per item, in the order the items were added (so every
process that replays the log gives each item the same index)::

    {"v": 1, "seq": 0, "part": 0, "parts": 1, "item_id": "new-1", "title": "...", "text": "...",
     "dim": 384, "vector": "<base64 of dim little-endian float32>", "sha256": "<hex>"}

- ``seq``: the item's position in the log (0, 1, 2, ...): a lost or repeated line is detected.
- ``part`` / ``parts``: one ``add_items`` call is one group of ``parts`` lines written with one
  ``write`` and one ``fsync``; a group is used whole or not at all.
- ``vector``: the text encoder's output, stored so that a restart needs no encoder and gives the
  same vectors bit for bit.
- ``sha256``: of the other fields as canonical JSON (sorted keys, ASCII); any change shows.

Why JSON Lines: an append is one line, a write cut short by a crash is an unterminated last
line (easy to tell from damage), and the file reads with ``jq``/``grep``. Base64 keeps vectors
exact at 4/3 of their size, which is fine for items added one by one.

Durability and order: a writer holds ``fcntl.flock`` on ``added_items.lock`` beside the log,
reads what others appended since its last read, then appends, ``fsync``s the file (and the
directory when it created the file), and only then reports success. Readers take no lock: they
``os.stat`` the log, and when it changed, read the whole groups after their last offset.

A torn write (crash mid-append: the item was never acknowledged) is an incomplete last group.
Readers leave it unread; under the lock (at load, or before an append) it is skipped with a
warning and counted in ``ItemLog.torn``, and the next writer cuts it off before appending. Every
other defect (bad JSON, checksum, order, width, a duplicate id) is a ``DataFormatError`` naming
the file and line.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from hstu_blair.errors import DataFormatError

log = logging.getLogger(__name__)

ITEM_LOG = "added_items.jsonl"
"""File name of the log inside a run directory."""
LOCK_FILE = "added_items.lock"
"""File name of the writers' lock beside the log."""
FORMAT_VERSION = 1
FIELDS = ("v", "seq", "part", "parts", "item_id", "title", "text", "dim", "vector")
"""The fields of a record other than its checksum, in the order they are written."""


@dataclass(frozen=True)
class ItemRecord:
    """One added item: what restores it without the text encoder.

    ``vector`` is the (d_text,) float32 text vector; ``line`` its 1-based line in the log
    (None for items not read from a log)."""

    item_id: str
    title: str
    text: str
    vector: np.ndarray  # (d_text,) float32
    line: int | None = None


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def encode_record(
    seq: int, part: int, parts: int, item_id: str, title: str, text: str, vector: np.ndarray
) -> bytes:
    """One log line (with its ``\\n``) for an item; ``vector`` is (d_text,)."""
    row = np.ascontiguousarray(vector, dtype="<f4")  # (d_text,) little-endian float32
    fields: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "seq": seq,
        "part": part,
        "parts": parts,
        "item_id": item_id,
        "title": title,
        "text": text,
        "dim": int(row.shape[0]),
        "vector": base64.b64encode(row.tobytes()).decode("ascii"),
    }
    fields["sha256"] = hashlib.sha256(_canonical(fields)).hexdigest()
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ItemLog:
    """Reader and appender of one run directory's item log (not thread-safe: the caller locks).

    Args:
        path: the log file (``RUN_DIR/added_items.jsonl``); it need not exist yet.
        dim: d_text, the width every stored vector must have.
    """

    def __init__(self, path: str | Path, dim: int) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(LOCK_FILE)
        self.dim = dim
        self.items = 0
        """Items read or appended so far (the ``seq`` of the next one)."""
        self.torn = 0
        """Torn writes (incomplete last groups) skipped so far."""
        self._offset = 0  # bytes of whole groups read
        self._lines = 0  # lines of whole groups read
        self._inode: int | None = None  # of the file read from
        self._last_line = b""  # the last line of the whole groups read: must stay where it is
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) at the last read
        self._torn_at: int | None = None  # offset of the torn tail already counted

    # ---- reading -------------------------------------------------------------------------------
    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def changed(self) -> bool:
        """Whether the log changed since the last read (one ``os.stat``)."""
        return self._stat() != self._seen

    def read_new(
        self, taken: Container[str], final: bool = False
    ) -> tuple[list[list[ItemRecord]], DataFormatError | None]:
        """The whole groups appended since the last read, oldest first.

        Args:
            taken: item ids already in the catalogue (a logged item may not reuse one).
            final: no writer can be active (the caller holds the lock): an incomplete last group
                is a torn write, skipped with a warning and counted once. Otherwise it may be a
                write in progress, and is left for a later read.

        Returns:
            The groups read, and the first defect met (nothing after it is read; the next read
            starts there again), or None.
        """
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            self._seen = None
            if self._offset:
                return [], DataFormatError(
                    self.path, "the item log was deleted while in use: restart the servers"
                )
            return [], None
        with f:
            st = os.fstat(f.fileno())
            self._seen = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self._offset and (st.st_ino != self._inode or not self._same_prefix(f, st.st_size)):
                return [], DataFormatError(
                    self.path,
                    "the item log was replaced or truncated while in use (it is append-only): "
                    "restart the servers",
                )
            self._inode = st.st_ino
            f.seek(self._offset)
            groups, error, tail = self._read_groups(f, taken)
        if tail and final and self._torn_at != self._offset:
            self.torn += 1
            self._torn_at = self._offset
            log.warning(
                "%s:%d: skipped a torn record at the end of the item log (a write cut short by a crash; "
                "its item was never acknowledged)",
                self.path,
                self._lines + 1,
            )
        return groups, error

    def _same_prefix(self, f: BinaryIO, size: int) -> bool:
        """Whether the last line read is still just before the offset (not a new file)."""
        if size < self._offset:
            return False
        f.seek(self._offset - len(self._last_line))
        return f.read(len(self._last_line)) == self._last_line

    def _read_groups(
        self, f: BinaryIO, taken: Container[str]
    ) -> tuple[list[list[ItemRecord]], DataFormatError | None, bool]:
        """Whole groups from ``f``'s position; advances the offset past them. Returns the groups,
        the first defect (or None) and whether an incomplete group or line is left at the end."""
        groups: list[list[ItemRecord]] = []
        group: list[ItemRecord] = []
        group_parts = 0
        new_ids: set[str] = set()
        line = self._lines
        while raw := f.readline():
            if not raw.endswith(b"\n"):
                return groups, None, True  # unterminated: a write in progress or torn
            line += 1
            try:
                record, part, parts = self._parse(raw, line, self.items + len(group))
                if part != len(group) or (group and parts != group_parts):
                    where = f"part {part} of {parts}; expected part {len(group)}"
                    raise DataFormatError(self.path, f"record out of order ({where})", line)
                if record.item_id in taken or record.item_id in new_ids:
                    raise DataFormatError(
                        self.path,
                        f"item id {record.item_id!r} is already in the catalogue (the run was retrained "
                        "with it, or the log was edited): remove this record or move the log away",
                        line,
                    )
            except DataFormatError as exc:
                if b"\0" in raw and not f.read(1):  # zero-filled last line: a crash mid-write
                    return groups, None, True
                return groups, exc, False
            group_parts = parts
            group.append(record)
            new_ids.add(record.item_id)
            if len(group) == parts:
                groups.append(group)
                self.items += len(group)
                self._offset, self._lines, self._last_line, group = f.tell(), line, raw, []
        return groups, None, bool(group)

    def _parse(self, raw: bytes, line: int, seq: int) -> tuple[ItemRecord, int, int]:
        def bad(message: str) -> DataFormatError:
            return DataFormatError(
                self.path,
                f"corrupt item record: {message}. The log is append-only: restore it from a backup, "
                "or delete this line and every line after it (those items are then lost)",
                line,
            )

        try:
            fields = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad(f"not a JSON line ({exc})") from None
        if not isinstance(fields, dict):
            raise bad("not a JSON object")
        if fields.get("v") != FORMAT_VERSION:
            raise bad(f"format version {fields.get('v')!r}; this hstu-blair reads version {FORMAT_VERSION}")
        missing = [k for k in (*FIELDS, "sha256") if k not in fields]
        if missing or len(fields) != len(FIELDS) + 1:
            raise bad(f"fields {sorted(fields)}; expected {sorted((*FIELDS, 'sha256'))}")
        digest = fields.pop("sha256")
        if hashlib.sha256(_canonical(fields)).hexdigest() != digest:
            raise bad("checksum mismatch")
        ints, strs = ("seq", "part", "parts", "dim"), ("item_id", "title", "text", "vector")
        if not all(type(fields[k]) is int for k in ints) or not all(isinstance(fields[k], str) for k in strs):
            raise bad("wrong field types")
        if fields["seq"] != seq:
            raise bad(f"seq {fields['seq']}, expected {seq} (a record is missing or repeated)")
        if not 0 <= fields["part"] < fields["parts"]:
            raise bad(f"part {fields['part']} of {fields['parts']}")
        if fields["dim"] != self.dim:
            raise bad(f"vector width {fields['dim']}, but the run's text vectors have {self.dim}")
        try:
            data = base64.b64decode(fields["vector"], validate=True)
        except ValueError:
            raise bad("vector is not base64") from None
        if len(data) != 4 * self.dim:
            raise bad(f"vector has {len(data)} bytes, expected {4 * self.dim}")
        vector = np.frombuffer(data, dtype="<f4").astype(np.float32)  # (d_text,)
        record = ItemRecord(fields["item_id"], fields["title"], fields["text"], vector, line)
        return record, fields["part"], fields["parts"]

    # ---- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, exclusive: bool = True) -> Iterator[None]:
        """Hold the log's file lock: exclusive to append, shared to read with no writer active.

        A shared lock is skipped when the lock file does not exist or cannot be opened (no
        writer has run, or a read-only directory).

        Raises:
            OSError: (exclusive) the lock file cannot be created, e.g. a read-only directory.
        """
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT if exclusive else os.O_RDONLY, 0o644)
        except OSError:
            if exclusive:
                raise
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    def append(
        self, item_ids: Sequence[str], texts: Sequence[str], titles: Sequence[str], vectors: np.ndarray
    ) -> list[ItemRecord]:
        """Append one group of items durably (written and fsync'd when this returns).

        Call under :meth:`locked` after ``read_new(..., final=True)`` found no defect: a torn tail
        is cut off first, so the new group starts at the end of the last whole one.

        Args:
            item_ids, texts, titles: the items (titles may be "").
            vectors: (m, d_text) float32 text vectors.

        Returns:
            The appended records.

        Raises:
            OSError: the log cannot be written (nothing is appended then).
        """
        assert vectors.shape == (len(item_ids), self.dim), vectors.shape
        parts = len(item_ids)
        payload = b"".join(
            encode_record(self.items + i, i, parts, item_id, title, text, vectors[i])
            for i, (item_id, text, title) in enumerate(zip(item_ids, texts, titles))
        )
        created = not self.path.exists()
        if not created and self.path.stat().st_size > self._offset:
            self._truncate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # leave no partial group behind
                os.ftruncate(fd, self._offset)
            raise
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)
        first_line = self._lines + 1
        self._last_line = payload[payload.rfind(b"\n", 0, len(payload) - 1) + 1 :]
        self._seen = self._stat()  # nobody else appends while the lock is held
        self._inode = None if self._seen is None else self._seen[0]
        self._offset += len(payload)
        self._lines += parts
        self.items += parts
        return [
            ItemRecord(item_id, title, text, np.array(vectors[i], dtype=np.float32), first_line + i)
            for i, (item_id, text, title) in enumerate(zip(item_ids, texts, titles))
        ]

    def _truncate(self) -> None:
        """Cut off a torn tail (bytes after the last whole group)."""
        with open(self.path, "r+b") as f:
            f.truncate(self._offset)
            os.fsync(f.fileno())
        log.warning("%s: cut off a torn record after line %d before appending", self.path, self._lines)
