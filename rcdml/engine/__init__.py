"""Training engine: loop, backends, optimizer and schedule, checkpoints."""
