"""Serving: :class:`Recommender` (Python API, raw ids) and an HTTP app over it (``serving.app``)."""

from hstu_blair.serving.recommender import (
    Query,
    Recommendation,
    Recommendations,
    Recommender,
    ServingError,
    UnknownIdError,
)

__all__ = ["Query", "Recommendation", "Recommendations", "Recommender", "ServingError", "UnknownIdError"]
