"""``StoreLink``: a recommender's connection to its run's store, shared with other processes: what
it has read of the stored items, which damaged records it set aside, and whether it may write."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from hstu_blair.run.layout import STORE_FILE, store_path
from hstu_blair.run.store import (
    DamagedRecord,
    ItemRecord,
    Store,
    StoreDamagedError,
    StoreError,
    StoreMissingError,
    store_url,
)
from hstu_blair.serving.errors import StoreWriteError

_LOG = logging.getLogger(__name__)


class StoreLink:
    """The run's store as one recommender sees it.

    Args:
        run_dir: the run directory.
        store: a SQLite path or database URL (default ``RUN_DIR/store.sqlite``), or an open
            :class:`Store` to share (it stays its caller's to close).
        persist: open the run's store; ``False``: an in-memory one (this process only);
            ``"read"``: open an existing store read-only (no file created, no migration, writes
            refused), or, without one, an in-memory store that refuses writes.

    Raises:
        StoreError: the store cannot be opened. A read-only run directory without a store gets
            an in-memory one, and writes are refused.
    """

    def __init__(
        self, run_dir: str | Path, store: str | Path | Store | None, persist: bool | Literal["read"]
    ) -> None:
        self.run_dir = Path(run_dir)
        self.writable = True  # False: a read-only run directory without a store, served from memory
        self.owns_store = not isinstance(store, Store)
        self.persist = persist
        if isinstance(store, Store):  # shared, e.g. by the versions a LiveRecommender swaps
            self.store = store
        elif persist == "read":
            self.store = self._open_read_only(store)
        else:
            self.store = self._open(store) if persist else Store("sqlite://")
        self.seq = 0  # the highest item seq read from the store
        self.head = 0  # the store's max(seq) when last looked at
        self._skipped: set[int] = set()  # seqs of damaged items skipped while serving
        self._unreadable: set[str] = set()  # users whose stored events cannot be read (damaged store)
        self.records_set_aside = 0
        """Damaged records kept out of service (in the store's ``set_aside`` table, or skipped)."""

    def _open(self, location: str | Path | None) -> Store:
        try:
            return Store.for_run(self.run_dir, location)
        except StoreMissingError:
            raise
        except StoreError as exc:
            if location is None and not store_path(self.run_dir).exists():
                # a read-only run directory without a store: nothing to read, nothing can be written
                _LOG.warning("%s: serving without a store (writes are refused)", exc)
                self.writable = False
                return Store("sqlite://")
            raise

    def _open_read_only(self, location: str | Path | None) -> Store:
        """The store opened read-only; none (``RUN_DIR/store.sqlite`` absent): an in-memory one,
        and writes are refused."""
        url = store_url(location if location is not None else store_path(self.run_dir))
        if url.startswith("sqlite:///") and not Path(url.split("///", 1)[1]).exists():
            self.writable = False
            return Store("sqlite://")
        return Store(location if location is not None else store_path(self.run_dir), read_only=True)

    def close(self) -> None:
        """Close the store's connections if this link opened it."""
        if self.owns_store:
            self.store.close()

    # ---- reading the items other processes added ---------------------------------------------
    def stale(self) -> bool:
        """Whether items were stored since the last :meth:`read_new_items` (one cheap query)."""
        return self.store.item_head() != self.head

    def read_new_items(
        self, d_text: int, taken: Callable[[str], bool]
    ) -> tuple[list[ItemRecord], list[tuple[int, DamagedRecord]]]:
        """The items stored since the last read, in store order, and the damaged ones (a bad row,
        or an id ``taken`` already): those not seen before are counted and logged once."""
        head = self.store.item_head()
        records, damaged = self.store.read_items(self.seq, d_text)
        good: list[ItemRecord] = []
        for r in records:
            assert r.seq is not None
            if taken(r.item_id):
                why = f"item id {r.item_id!r} is already in the catalogue"
                damaged.append((r.seq, DamagedRecord(f"items seq {r.seq}", why, r.item_id.encode())))
            else:
                good.append(r)
        new = [(seq, r) for seq, r in damaged if seq not in self._skipped]
        self._skipped.update(seq for seq, _ in new)
        self.records_set_aside += len(new)
        log_set_aside([r for _, r in new])
        seqs = [r.seq for r in records if r.seq is not None] + [seq for seq, _ in damaged]
        self.seq = max([self.seq, *seqs])
        self.head = max(head, self.seq)
        return good, damaged

    def move_aside(self, damaged: Sequence[tuple[int, DamagedRecord]]) -> None:
        """Move damaged item rows to the store's ``set_aside`` table (when it can be written)."""
        if not damaged or self.store.read_only:
            return
        try:
            self.store.move_items_aside(damaged)
            self._skipped -= {seq for seq, _ in damaged}
        except StoreError as exc:
            _LOG.warning("cannot move damaged items aside: %s", exc)

    def count_set_aside(self) -> None:
        """Recount the damaged records: the store's ``set_aside`` table plus those skipped, and the
        users whose stored events cannot be read."""
        table = len(self.store.set_aside_records())
        self.records_set_aside = table + len(self._skipped) + len(self._unreadable)

    # ---- reading users' events ---------------------------------------------------------------
    def user_events(self, user_id: str, limit: int | None) -> tuple[list[str], np.ndarray]:
        """A user's last ``limit`` stored events (:meth:`Store.user_events`); none when they
        cannot be read because the store is damaged: the user is set aside (counted, logged once)."""
        try:
            return self.store.user_events(user_id, limit)
        except StoreDamagedError as exc:
            self.set_aside_user(user_id, exc)
            return [], np.zeros(0, np.int64)

    def seen_items(self, user_id: str) -> list[str]:
        """The items of a user's stored events (:meth:`Store.seen_items`); none when they cannot be
        read (the user is set aside)."""
        try:
            return self.store.seen_items(user_id)
        except StoreDamagedError as exc:
            self.set_aside_user(user_id, exc)
            return []

    def set_aside_user(self, user_id: str, exc: StoreDamagedError) -> None:
        """Count a user whose stored events cannot be read (once) and log it once."""
        if user_id in self._unreadable:
            return
        self._unreadable.add(user_id)
        self.records_set_aside += 1
        log_set_aside([DamagedRecord(f"events of user {user_id!r}", str(exc), b"")])

    # ---- writing -------------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Refuse a write to a store that cannot take it (a read-only SQLite file or directory).

        Raises:
            StoreWriteError: what cannot be written and what to do.
        """
        path = self.store.sqlite_path
        if self.persist == "read":
            raise StoreWriteError("cannot write: this recommender was loaded read-only (persist='read')")
        if not self.writable:
            raise StoreWriteError(
                f"cannot write: the run directory {self.run_dir} is not writable and has no "
                f"{STORE_FILE}; name a writable store (--store), or load the run with persist=False"
            )
        if self.store.read_only or (path is not None and not os.access(path.parent, os.W_OK)):
            raise self.write_failure(PermissionError(errno.EACCES, "no write access"))

    def write_failure(self, exc: Exception) -> StoreWriteError:
        """The error a failed write raises (what failed, and what to do)."""
        why = getattr(exc, "strerror", None) or str(exc)
        path = self.store.sqlite_path
        if isinstance(exc, StoreDamagedError):
            return StoreWriteError(f"cannot write: {exc}")
        if path is not None and (isinstance(exc, PermissionError) or self.store.read_only):
            problem = f"the run directory {path.parent} is not writable ({why})"
        else:
            problem = f"writing to the store {self.store.describe()} failed ({why})"
        return StoreWriteError(
            f"cannot write: {problem}. Added items and events are kept in the run's store so that "
            "restarts and other server processes see them: make it writable, or load the run "
            "with persist=False to keep them in memory only"
        )


def log_set_aside(records: Sequence[DamagedRecord]) -> None:
    """One warning per damaged record."""
    for r in records:
        _LOG.warning(
            "set aside %s: %s (kept out of service; other records are served)",
            r.source,
            r.reason,
        )
