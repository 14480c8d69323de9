"""``UserEvents``: what users did since training, kept in the run's store, and each user's history
(their training interactions followed by their stored events)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hstu_blair.data.dataset import SequenceData
from hstu_blair.errors import UnknownIdError
from hstu_blair.run.store import StoreError
from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.ids import check_new_id, check_time, check_unicode, same_id
from hstu_blair.serving.store_link import StoreLink


class UserEvents:
    """Users' events over a trained dataset, a catalogue and the run's store.

    Args:
        data: the dataset the model was trained on (its users and their sequences).
        catalogue: the items served (events must name one).
        link: the run's store, where events are kept.
    """

    def __init__(self, data: SequenceData, catalogue: Catalogue, link: StoreLink) -> None:
        self.data = data
        self.catalogue = catalogue
        self.link = link

    def add(self, events: Sequence[tuple[str, str, int]]) -> int:
        """Check and store ``(user_id, item_id, timestamp)`` rows, all or none; see
        :meth:`Recommender.add_events`."""
        rows: list[tuple[str, str, int]] = []
        unknown: list[str] = []
        for n, event in enumerate(events):
            if len(event) != 3:
                raise ServingError(f"events[{n}]: expected (user_id, item_id, timestamp), got {event!r}")
            user_id, item_id, timestamp = same_id(str(event[0])), same_id(str(event[1])), event[2]
            if not self.is_training_user(user_id):  # new users: ids in canonical form
                check_new_id(user_id, f"events[{n}].user_id")
            check_unicode(f"events[{n}].user_id", [user_id])
            if item_id not in self.catalogue:
                check_new_id(item_id, f"events[{n}].item_id")  # a malformed id is named as such
                unknown.append(item_id)
            rows.append((user_id, item_id, check_time(timestamp, f"events[{n}].timestamp")))
        if unknown:
            raise UnknownIdError("item", list(dict.fromkeys(unknown)))
        self.link.check_writable()
        try:
            self.link.store.add_events(rows)
        except StoreError as exc:
            raise self.link.write_failure(exc) from exc
        return len(rows)

    def forget(self, user_id: str) -> int:
        """Delete a user's stored events; returns how many."""
        self.link.check_writable()
        try:
            return self.link.store.forget_user(same_id(str(user_id)))
        except StoreError as exc:
            raise self.link.write_failure(exc) from exc

    def is_training_user(self, user_id: str) -> bool:
        user_id = same_id(user_id)
        try:
            self.data.user_index(user_id)
        except UnknownIdError:
            return False
        return True

    def history(self, user_id: str) -> tuple[np.ndarray, np.ndarray, bool]:
        """A user's history: training interactions and stored events, ordered by time (ties:
        training first, then events in the order stored); events on items no longer in the
        catalogue (set aside) are left out.

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
        stored_ids, stored_times = self.link.store.user_events(user_id)  # (L1,)
        if stored_ids:
            known, positions, _ = self.catalogue.indices(stored_ids, skip_unknown=True)
            ids = np.concatenate([ids, np.asarray(known, np.int64)])
            times = np.concatenate([times, stored_times[positions]])
            order = np.argsort(times, kind="stable")
            ids, times = ids[order], times[order]
        return ids, times, user is not None
