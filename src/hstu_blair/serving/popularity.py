"""The most popular items (what a user without history gets): training interactions per item."""

from __future__ import annotations

import numpy as np

from hstu_blair.data.dataset import SequenceData
from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.ids import check_k
from hstu_blair.serving.queries import Recommendation, Recommendations


class Popularity:
    """Each item's share of the training interactions (items added at run time have none).

    Args:
        data: the prepared dataset the run was trained on.
    """

    def __init__(self, data: SequenceData) -> None:
        self.data = data
        self._shares: np.ndarray | None = None  # (N+1,) computed on first use

    def shares(self) -> np.ndarray:
        """(N+1,) float64 share of the training interactions per item index (padding: -1)."""
        if self._shares is None:
            data = self.data
            counts = np.bincount(data.item_seq, minlength=data.num_items + 1).astype(np.float64)  # (N+1,)
            counts[0] = -1.0  # padding
            self._shares = counts / max(1, data.num_interactions)
        return self._shares

    def top(self, catalogue: Catalogue, k: int, allowed: np.ndarray | None = None) -> Recommendations:
        """The ``k`` most popular trained items (only those ``allowed``, a (N+1,) bool mask, when
        given); score = their share of the training interactions.

        Raises:
            ServingError: ``k < 1``.
        """
        check_k(k)
        shares = self.shares()
        if allowed is not None:
            shares = np.where(allowed[: shares.shape[0]], shares, -1.0)
        order = np.argsort(-shares, kind="stable")[:k]
        order = order[shares[order] >= 0]
        ids, titles = catalogue.item_ids, catalogue.titles
        return Recommendations([Recommendation(ids[i], float(shares[i]), titles[i]) for i in order])
