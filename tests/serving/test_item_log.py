"""The item log on its own: format, durability calls, torn writes, corruption naming the line."""

from __future__ import annotations

import base64
import json
import logging
import os

import numpy as np
import pytest

from hstu_blair.errors import DataFormatError
from hstu_blair.serving import item_log as item_log_module
from hstu_blair.serving.item_log import ItemLog, encode_record

DIM = 4


def _vectors(m: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((m, DIM)).astype(np.float32)  # (m, DIM)


def _write(log: ItemLog, ids: list[str], seed: int = 0) -> np.ndarray:
    vectors = _vectors(len(ids), seed)
    with log.locked():
        groups, error = log.read_new(set(), final=True)
        assert error is None
        log.append(ids, [f"text of {i}" for i in ids], [f"Title {i}" for i in ids], vectors)
    return vectors


def _read(path, taken=(), final: bool = True) -> tuple[ItemLog, list, DataFormatError | None]:
    log = ItemLog(path, DIM)
    groups, error = log.read_new(set(taken), final=final)
    return log, groups, error


def test_round_trip_is_bit_exact_and_readable(tmp_path):
    path = tmp_path / "added_items.jsonl"
    first = _write(ItemLog(path, DIM), ["a"])
    writer = ItemLog(path, DIM)
    writer.read_new(set())
    second = _write(writer, ["b", "c"], seed=1)
    log, groups, error = _read(path)
    assert error is None and log.items == 3 and log.torn == 0
    assert [[r.item_id for r in g] for g in groups] == [["a"], ["b", "c"]]  # groups as they were added
    got = np.stack([r.vector for g in groups for r in g])
    assert got.tobytes() == np.concatenate([first, second]).tobytes()
    assert [r.line for g in groups for r in g] == [1, 2, 3]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["seq"], x["part"], x["parts"]) for x in lines] == [(0, 0, 1), (1, 0, 2), (2, 1, 2)]
    assert lines[1]["title"] == "Title b" and lines[1]["text"] == "text of b" and lines[1]["dim"] == DIM
    assert base64.b64decode(lines[2]["vector"]) == second[1].astype("<f4").tobytes()
    assert len(lines[0]["sha256"]) == 64
    assert not log.changed()
    _write(writer, ["d"])
    assert log.changed() and [r.item_id for g in log.read_new(set())[0] for r in g] == ["d"]


def test_appends_are_fsynced_and_the_new_file_directory_too(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(item_log_module.os, "fsync", fsync)
    path = tmp_path / "added_items.jsonl"
    log = ItemLog(path, DIM)
    _write(log, ["a"])
    assert synced == [str(path), str(tmp_path)]  # the file, then the directory that now lists it
    synced.clear()
    _write(log, ["b"])
    assert synced == [str(path)]


def test_a_torn_last_line_is_skipped_counted_and_cut_off_by_the_next_writer(tmp_path, caplog):
    path = tmp_path / "added_items.jsonl"
    _write(ItemLog(path, DIM), ["a", "b"])
    torn = encode_record(2, 0, 1, "lost", "", "never acknowledged", _vectors(1)[0])
    with open(path, "ab") as f:
        f.write(torn[: len(torn) // 2])  # a crash in the middle of the write
    # a reader that cannot rule out a write in progress leaves it for later, silently
    log, groups, error = _read(path, final=False)
    assert error is None and log.items == 2 and log.torn == 0
    with caplog.at_level(logging.WARNING, logger=item_log_module.__name__):
        log, groups, error = _read(path)
    assert error is None and [r.item_id for g in groups for r in g] == ["a", "b"] and log.torn == 1
    assert "added_items.jsonl:3: skipped a torn record" in caplog.text
    log.read_new(set(), final=True)
    assert log.torn == 1  # counted once
    with log.locked():
        log.append(["c"], ["text"], [""], _vectors(1))
    assert path.read_bytes().count(b"\n") == 3 and b"lost" not in path.read_bytes()
    log, groups, error = _read(path)
    assert error is None and [r.item_id for g in groups for r in g] == ["a", "b", "c"] and log.torn == 0


@pytest.mark.parametrize("tail", ["incomplete group", "zero-filled line"])
def test_other_torn_writes(tmp_path, tail):
    path = tmp_path / "added_items.jsonl"
    _write(ItemLog(path, DIM), ["a"])
    with open(path, "ab") as f:
        if tail == "incomplete group":  # the first line of a two-item write, whole, then nothing
            f.write(encode_record(1, 0, 2, "x", "", "t", _vectors(1)[0]))
        else:  # a crash can leave the file longer, filled with zeros
            f.write(b"\0" * 100 + b"\n")
    log, groups, error = _read(path)
    assert error is None and [r.item_id for g in groups for r in g] == ["a"] and log.torn == 1


def _corrupt(path, line: int, change) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = change(lines[line - 1])
    path.write_bytes(b"".join(lines))


def _flip_title(raw: bytes) -> bytes:
    return raw.replace(b"Title", b"Tittle")


def _bad_json(raw: bytes) -> bytes:
    return raw[:20] + b"\n"


def _drop(raw: bytes) -> bytes:
    return b""


@pytest.mark.parametrize(
    ("line", "change", "message", "at"),
    [
        (2, _flip_title, "checksum mismatch", 2),
        (1, _bad_json, "not a JSON line", 1),
        (2, _drop, "seq 2, expected 1", 2),  # a lost record
        (3, _flip_title, "checksum mismatch", 3),  # the last line, but whole: damage, not a torn write
    ],
)
def test_corruption_is_an_error_naming_file_and_line(tmp_path, line, change, message, at):
    path = tmp_path / "added_items.jsonl"
    log = ItemLog(path, DIM)
    for name in "abc":
        _write(log, [name])
    _corrupt(path, line, change)
    log, groups, error = _read(path)
    assert isinstance(error, DataFormatError) and f"added_items.jsonl:{at}: corrupt item record" in str(error)
    assert message in str(error) and log.torn == 0
    assert len(groups) == at - 1  # the records before it are good
    assert log.read_new(set(), final=True)[1] is not None  # nothing after it is read, ever


def test_wrong_width_duplicates_and_version_are_errors(tmp_path):
    path = tmp_path / "added_items.jsonl"
    _write(ItemLog(path, DIM), ["a", "b"])
    log = ItemLog(path, DIM + 1)
    assert "vector width 4, but the run's text vectors have 5" in str(log.read_new(set())[1])
    error = _read(path, taken={"b"})[2]
    assert "added_items.jsonl:2" in str(error) and "'b' is already in the catalogue" in str(error)
    _corrupt(path, 1, lambda raw: raw.replace(b'"v":1', b'"v":2'))
    assert "format version 2" in str(_read(path)[2])


@pytest.mark.parametrize("replacement", [["z"], ["a", "b"]])  # shorter; same size, other vectors
def test_a_replaced_log_is_an_error_reported_once(tmp_path, replacement):
    path = tmp_path / "added_items.jsonl"
    log = ItemLog(path, DIM)
    _write(log, ["a", "b"])
    reader = _read(path)[0]
    path.unlink()
    assert reader.changed() and "deleted while in use" in str(reader.read_new(set())[1])
    assert not reader.changed()  # reported once, not on every request
    _write(ItemLog(path, DIM), replacement, seed=7)  # a new file, perhaps with the old inode number
    assert reader.changed()
    assert "replaced or truncated while in use" in str(reader.read_new(set())[1])
    assert not reader.changed()
