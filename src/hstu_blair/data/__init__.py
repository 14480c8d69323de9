"""Stage 1: raw published files -> the prepared-dataset directory (see docs/dataset-format.md)."""

from hstu_blair.data.ids import InvalidIdError, normalize_id

__all__ = ["InvalidIdError", "normalize_id"]
