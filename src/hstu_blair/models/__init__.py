"""Stage 3: torch modules (item embeddings with text fusion, HSTU, SASRec, losses)."""
