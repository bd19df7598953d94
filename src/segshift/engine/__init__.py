"""Training engine: trainer loop, streams, schedules, checkpoints, logs."""
