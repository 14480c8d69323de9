"""Serving: :class:`Recommender` (Python API, raw ids) and an HTTP app over it (``serving.app``).

The names are imported lazily so that ``hstu-blair`` commands that never serve (``prepare``,
``stats``...) do not load torch.
"""

from typing import Any

INDEXES = ("exact", "faiss", "faiss-ivf", "faiss-hnsw")
"""Retrieval index names (``serving.index.build_index``); kept here so the CLI needs no torch."""

__all__ = ["Query", "Recommendation", "Recommendations", "Recommender", "ServingError", "UnknownIdError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hstu_blair.serving import recommender

        return getattr(recommender, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
