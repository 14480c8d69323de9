"""Model versions of a run directory, and the pointer that says which one is served.

    RUN_DIR/                     version 0: the trained run (model.json, checkpoints/)
    RUN_DIR/versions/1/          model.json, checkpoints/, added_text.safetensors, ...
    RUN_DIR/versions/2/
    RUN_DIR/versions/current.json   {"version": 2}: what loading the run gives

A version directory is written completely under a temporary name and renamed into place; only
then is the pointer replaced (a new file renamed over the old one), so a reader sees either the
old version or the new one, never a half-written one. A run directory without ``versions/`` (every
run before ``hstu-blair update`` existed) is version 0. Servers notice a new pointer by its
``stat`` (:func:`pointer_signature`: a rename gives a new inode), one system call per check.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.errors import ConfigError, HstuBlairError
from hstu_blair.run.layout import (
    STAGING_GLOB,
    model_info_path,
    pointer_path,
    staging_name,
    staging_pid,
    version_dir,
    versions_dir,
    writer_lock_path,
)

DEFAULT_TOLERANCE = 0.02
"""The largest drop of the validation metric ``update`` publishes, as a fraction of the served
model's value (0.02: the refreshed model may score up to 2% below the served one)."""


class UpdateRefused(HstuBlairError):
    """The refreshed model scored worse on validation than the served one by more than the
    tolerance: nothing was published (the served version is unchanged)."""


def current_version(run_dir: Path) -> int:
    """The version the pointer names (0 when there is no pointer).

    Raises:
        ConfigError: a pointer that is not ``{"version": n}`` or names a missing version.
    """
    path = pointer_path(run_dir)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return 0
    try:
        version = json.loads(raw)["version"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f'{path}: expected {{"version": <integer>}}, got {raw[:80]!r}') from None
    if (
        not isinstance(version, int)
        or version < 0
        or not model_info_path(version_dir(run_dir, version)).exists()
    ):
        raise ConfigError(f"{path} names version {version!r}, which {Path(run_dir)} does not hold")
    return version


def pointer_signature(run_dir: Path) -> tuple[int, int] | None:
    """``(inode, mtime_ns)`` of the pointer, None without one: changes whenever a version is
    published or rolled back (the cheap check servers make between requests)."""
    try:
        st = os.stat(pointer_path(run_dir))
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def list_versions(run_dir: Path) -> list[int]:
    """Every complete version of the run, oldest first (0 included)."""
    found = [0] if model_info_path(run_dir).exists() else []
    root = versions_dir(run_dir)
    if root.is_dir():
        found += sorted(
            int(p.name) for p in root.iterdir() if p.name.isdigit() and model_info_path(p).exists()
        )
    return found


def next_version(run_dir: Path) -> int:
    """The number a new version gets (one above every version written so far)."""
    return max(list_versions(run_dir), default=0) + 1


@contextlib.contextmanager
def writer_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's version-writer lock (``versions/.writer.lock``, an ``flock`` the kernel
    releases when the process ends, killed or not) while a new version is made, so that two
    ``update`` runs cannot both build version n and the second fail only at its rename. On leaving,
    a version this process staged but did not commit is deleted, and so is a ``versions/`` that
    the lock created and nothing else used.

    Raises:
        ConfigError: another process holds it (names its pid).
    """
    path = writer_lock_path(run_dir)
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigError(
                f"{run_dir}: another update is writing a new version (pid {holder}, lock {path}); "
                "wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            for staged in path.parent.glob(staging_name("*")):  # a version this process left unfinished
                shutil.rmtree(staged, ignore_errors=True)
            handle.truncate(0)
            if created and [p for p in path.parent.iterdir()] == [path]:
                shutil.rmtree(path.parent)  # nothing was written: leave the run as it was (train accepts it)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_staging(run_dir: Path) -> list[Path]:
    """Staging directories (``versions/.<n>.<pid>.tmp``) whose writer is no longer running: left
    by an ``update`` that was killed (the writer lock, released by the kernel, is no sign of them)."""
    root = versions_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(p, staging_pid(p.name)) for p in root.glob(STAGING_GLOB)]
    return sorted(p for p, pid in found if pid is not None and pid != os.getpid() and not _alive(pid))


def remove_stale_staging(run_dir: Path) -> list[Path]:
    """Delete :func:`stale_staging`'s directories; returns them. Call it under :func:`writer_lock`."""
    stale = stale_staging(run_dir)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def staging_dir(run_dir: Path, version: int) -> Path:
    """Where version ``version`` is written before :func:`commit_version` renames it into place."""
    path = versions_dir(run_dir) / staging_name(str(version))
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def commit_version(run_dir: Path, staged: Path, version: int) -> Path:
    """Rename a fully written ``staged`` directory to ``versions/<version>`` (not yet served)."""
    final = version_dir(run_dir, version)
    os.replace(staged, final)
    return final


def publish(run_dir: Path, version: int) -> None:
    """Point the run at ``version`` (atomically: a new pointer file renamed over the old)."""
    if version not in list_versions(run_dir):
        raise ConfigError(f"{run_dir} has no version {version}")
    write_json_atomic(pointer_path(run_dir), {"version": version})


def prune(run_dir: Path, keep: int) -> list[int]:
    """Delete all but the ``keep`` newest versions; the served one and version 0 (the trained run
    itself) are never deleted. Returns the versions deleted.

    Raises:
        ConfigError: ``keep`` < 1.
    """
    if keep < 1:
        raise ConfigError(f"--keep must be at least 1, got {keep}")
    served = current_version(run_dir)
    old = [v for v in list_versions(run_dir) if v != 0][:-keep]
    removed = [v for v in old if v != served]
    for v in removed:
        shutil.rmtree(version_dir(run_dir, v))
    return removed


def rollback(run_dir: Path) -> tuple[int, int]:
    """Point the run at the version before the served one; returns ``(from, to)``.

    Raises:
        ConfigError: the served version is the oldest one kept, or an ``update`` is writing a
            version (:func:`writer_lock`).
    """

    def older() -> tuple[int, int]:
        served = current_version(run_dir)
        before = [v for v in list_versions(run_dir) if v < served]
        if not before:
            raise ConfigError(
                f"{run_dir}: version {served} is the oldest kept; there is nothing to roll back to"
            )
        return served, before[-1]

    older()  # refused before the lock (which creates versions/) when there is nothing to go back to
    with writer_lock(run_dir):
        served, target = older()
        publish(run_dir, target)
        return served, target
