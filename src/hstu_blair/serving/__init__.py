"""Serving: :class:`~hstu_blair.serving.recommender.Recommender` (Python API, external ids) and an
HTTP app over it (:mod:`hstu_blair.serving.app`).

This package file imports nothing heavy, so ``hstu-blair`` commands that never serve do not load
torch; import ``hstu_blair.Recommender`` (or ``hstu_blair.serving.recommender``) to use it.
"""

INDEXES = ("exact", "faiss", "faiss-ivf", "faiss-hnsw")
"""Retrieval index names (``serving.index.build_index``); ``faiss`` means ``faiss-ivf``."""
