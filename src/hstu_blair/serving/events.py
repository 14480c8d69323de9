"""``UserEvents``: what users did since training, kept in the run's store, and each user's history
(their training interactions followed by their stored events)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from hstu_blair.data.dataset import SequenceData
from hstu_blair.errors import UnknownIdError
from hstu_blair.run.store import EventConflictError, EventRow, StoreDamagedError, StoreError
from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.errors import EventConflict, ServingError
from hstu_blair.serving.ids import check_new_id, check_time, check_unicode, same_id
from hstu_blair.serving.store_link import StoreLink

EARLIER_CACHE_USERS = 1024
"""Users whose earlier items :class:`UserEvents` keeps (least recently asked for dropped first)."""


class UserEvents:
    """Users' events over a trained dataset, a catalogue and the run's store.

    Args:
        data: the dataset the model was trained on (its users and their sequences).
        catalogue: the items served (events must name one).
        link: the run's store, where events are kept.
        max_len: the most recent events the model reads (only these are read from the store).
    """

    def __init__(self, data: SequenceData, catalogue: Catalogue, link: StoreLink, max_len: int) -> None:
        self.max_len = max_len
        self.data = data
        self.catalogue = catalogue
        self.link = link
        # user -> (store's event head, catalogue size, the indices of their earlier items): a
        # heavy user's distinct items are read once per change of the store, not per request
        self._earlier: OrderedDict[str, tuple[tuple[int, int], np.ndarray]] = OrderedDict()
        self._earlier_lock = threading.Lock()  # requests run on several threads

    def add(self, events: Sequence[tuple[Any, ...]], idempotency_key: str | None = None) -> int:
        """Check and store ``(user_id, item_id, timestamp[, event_id])`` rows, all or none, durably;
        used by :meth:`Recommender.recommend_user` at once, in every process. Each event is stored once
        (the same ``event_id``, else user, item and timestamp: skipped); a batch whose
        ``idempotency_key`` was used for it before stores nothing (even after :meth:`forget`). Returns
        the distinct events of the batch, each in the store now (a retry gets the same).

        Raises:
            UnknownIdError: events name items not in the catalogue (every one named; nothing stored).
            EventConflict: an ``event_id`` or ``idempotency_key`` used for other events (nothing stored).
            ServingError: a malformed id or a timestamp that is not an integer in range.
            StoreWriteError: the store cannot be written.
        """
        rows: list[EventRow] = []
        unknown: list[str] = []
        for n, event in enumerate(events):
            if len(event) not in (3, 4):
                raise ServingError(
                    f"events[{n}]: expected (user_id, item_id, timestamp[, event_id]), got {event!r}"
                )
            user_id, item_id, timestamp = same_id(str(event[0])), same_id(str(event[1])), event[2]
            event_id = str(event[3]) if len(event) == 4 and event[3] is not None else ""
            if not self.is_training_user(user_id):  # new users: ids in canonical form
                check_new_id(user_id, f"events[{n}].user_id")
            check_unicode(f"events[{n}].user_id", [user_id])
            if event_id:
                check_new_id(event_id, f"events[{n}].event_id")
            if item_id not in self.catalogue:
                check_new_id(item_id, f"events[{n}].item_id")  # a malformed id is named as such
                unknown.append(item_id)
            rows.append(EventRow(user_id, item_id, check_time(timestamp, f"events[{n}].timestamp"), event_id))
        if unknown:
            raise UnknownIdError("item", list(dict.fromkeys(unknown)))
        if idempotency_key is not None:
            check_new_id(idempotency_key, "idempotency_key")
        self.link.check_writable()
        try:
            return self.link.store.add_events(rows, idempotency_key).stored
        except EventConflictError as exc:
            raise EventConflict(str(exc)) from None
        except StoreError as exc:
            raise self.link.write_failure(exc) from exc

    def forget(self, user_id: str) -> int:
        """Delete a user's stored events; returns how many."""
        self.link.check_writable()
        user_id = same_id(str(user_id))
        try:
            return self.link.store.forget_user(user_id)
        except StoreDamagedError as exc:  # their events cannot be read, so not deleted either
            self.link.set_aside_user(user_id, exc)
            raise self.link.write_failure(exc) from exc
        except StoreError as exc:
            raise self.link.write_failure(exc) from exc

    def is_training_user(self, user_id: str) -> bool:
        user_id = same_id(user_id)
        try:
            self.data.user_index(user_id)
        except UnknownIdError:
            return False
        return True

    def history(self, user_id: str, seen: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
        """A user's history: training interactions and stored events, ordered by time (ties:
        training first, then events in the order stored); events on items no longer in the
        catalogue (set aside) are left out, and so are all of a user's stored events when the store
        is damaged where they are (:meth:`StoreLink.user_events`: the user is set aside).

        Only the last ``max_len`` stored events are read (the model reads no more). For a user with
        more, and ``seen``, the items of their earlier events come first, once each, at the time of
        the first event read: only ``exclude_seen`` uses them.

        Returns:
            (L,) int64 item indices, (L,) int64 timestamps, and whether the training data knows
            the user.
        """
        user_id = same_id(user_id)
        try:
            user: int | None = self.data.user_index(user_id)
        except UnknownIdError:
            user = None
        if user is None:
            ids, times = np.zeros(0, np.int64), np.zeros(0, np.int64)
        else:
            ids = self.data.user_items(user).astype(np.int64)  # (L0,)
            times = self.data.user_times(user).astype(np.int64)  # (L0,)
        stored_ids, stored_times = self.link.user_events(user_id, self.max_len)  # (L1,)
        if stored_ids:
            known, positions, _ = self.catalogue.indices(stored_ids, skip_unknown=True)
            ids = np.concatenate([ids, np.asarray(known, np.int64)])
            times = np.concatenate([times, stored_times[positions]])
            order = np.argsort(times, kind="stable")
            ids, times = ids[order], times[order]
        if seen and len(stored_ids) == self.max_len:  # perhaps more: their items, for exclude_seen
            extra = self._earlier_items(user_id, stored_ids)  # (E,)
            ids = np.concatenate([extra, ids])
            times = np.concatenate([np.full(extra.size, times[0], np.int64), times])
        return ids, times, user is not None

    def _earlier_items(self, user_id: str, last: list[str]) -> np.ndarray:
        """The catalogue indices of the items of a user's stored events that are not among their
        ``last`` events (sorted by id), cached per user until any process stores an event or the
        catalogue grows (a deleted user has no events left: :meth:`history` does not ask)."""
        key = (self.link.store.event_head(), len(self.catalogue))
        with self._earlier_lock:
            cached = self._earlier.get(user_id)
            if cached is not None and cached[0] == key:
                self._earlier.move_to_end(user_id)
                return cached[1]
        earlier = sorted(set(self.link.seen_items(user_id)) - set(last))
        extra = np.asarray(self.catalogue.indices(earlier, skip_unknown=True)[0], np.int64)
        with self._earlier_lock:
            self._earlier[user_id] = (key, extra)
            self._earlier.move_to_end(user_id)
            if len(self._earlier) > EARLIER_CACHE_USERS:
                self._earlier.popitem(last=False)
        return extra
