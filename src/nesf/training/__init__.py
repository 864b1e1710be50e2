"""Training: query sampling, objective, loop (single process and DDP), checkpoints."""
