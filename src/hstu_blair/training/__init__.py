"""Stage: training (batches, the loop, checkpoints, distributed setup)."""
