"""Stage: item text -> vectors (encoders, the embedding store, contrastive pretraining)."""
