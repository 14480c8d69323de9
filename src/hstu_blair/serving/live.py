"""``LiveRecommender``: the newest model version of a run, switched to without a restart.

    live = LiveRecommender.load("runs/ml-hstu")
    rec = live.current          # read once per request: every step of the answer uses this version
    rec.recommend_user("42")
    live.check()                # between requests: one stat() of the version pointer

``hstu-blair update`` (and ``rollback``) replace the run's version pointer (a file renamed over the
old one, :mod:`hstu_blair.run.versions`). :meth:`LiveRecommender.check` compares the pointer's
inode and mtime with the ones it loaded; when they changed it loads the new version completely in
a background thread (model, item vectors, index, the store's items) while requests keep being
answered by the old one, then replaces the one reference :attr:`current` holds. A request that
read :attr:`current` before the swap finishes on the old version; one that reads it after uses the
new one only, so no answer mixes two versions and no request waits for a load. A version that
fails to load is logged and counted (``failed_loads``); the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hstu_blair.run.versions import pointer_signature
from hstu_blair.serving.recommender import Recommender

_LOG = logging.getLogger(__name__)


class LiveRecommender:
    """Holds the :class:`Recommender` of a run's served version and swaps it when the pointer moves.

    Args:
        recommender: the version served now.
        load: builds the recommender of the run's current version (None: never swaps; what
            :func:`~hstu_blair.serving.app.create_app` wraps a plain ``Recommender`` in).
    """

    def __init__(self, recommender: Recommender, load: Callable[[], Recommender] | None = None) -> None:
        self._current = recommender
        self._load = load
        self.run_dir = Path(recommender.run.run_dir)
        self._signature = pointer_signature(self.run_dir) if load is not None else None
        self._loader: threading.Thread | None = None
        self._guard = threading.Lock()
        self.swaps = 0
        """Versions switched to since start."""
        self.failed_loads = 0
        """Versions that could not be loaded (the previous one kept serving)."""

    @classmethod
    def load(cls, run_dir: str | Path, **options: Any) -> LiveRecommender:
        """Load the run's current version; later versions are loaded with the same ``options``
        (those of :meth:`Recommender.load`), the first one's text encoder and its store (one
        store per process, kept open across versions; with ``persist=False`` the in-memory
        items and events carry over too)."""
        first = Recommender.load(run_dir, **options)

        def load_current() -> Recommender:
            shared = {"encoder": live.current.growth.encoder, "store": live.current.store}
            return Recommender.load(run_dir, **{**options, **shared})

        live = cls(first, load_current)
        return live

    @property
    def current(self) -> Recommender:
        """The recommender of the version served now (read it once per request)."""
        return self._current

    @property
    def version(self) -> int:
        return self._current.version

    def check(self) -> bool:
        """Start loading the run's current version in the background if its pointer changed since
        the last load (one ``stat``); returns whether a load was started."""
        if self._load is None:
            return False
        signature = pointer_signature(self.run_dir)
        if signature == self._signature:
            return False
        with self._guard:
            if self._loader is not None and self._loader.is_alive():
                return False
            self._loader = threading.Thread(
                target=self._swap, args=(signature,), name="hstu-blair-version-loader", daemon=True
            )
            self._loader.start()
        return True

    def _swap(self, signature: tuple[int, int] | None) -> None:
        assert self._load is not None
        try:
            fresh = self._load()
        except Exception as exc:  # a damaged or half-pruned version must not stop serving
            self.failed_loads += 1
            self._signature = signature  # retried when the pointer moves again
            _LOG.error(
                "cannot load the new model version of %s (still serving version %d): %s",
                self.run_dir,
                self._current.version,
                exc,
            )
            return
        previous = self._current.version
        self._current = fresh  # the swap: one reference assignment
        self._signature = signature
        self.swaps += 1
        _LOG.info("now serving model version %d of %s (was %d)", fresh.version, self.run_dir, previous)

    def close(self) -> None:
        """Wait for a version load in progress, then close the store every version shares."""
        self.wait()
        self._current.store.close()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a load in progress (tests, scripts)."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout)
