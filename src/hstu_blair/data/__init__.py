"""Stage 1: raw published files -> the prepared-dataset directory (see docs/dataset-format.md)."""
