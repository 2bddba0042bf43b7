"""Training and evaluation engine: loop, backends, optimizer, checkpoints, config validation."""
