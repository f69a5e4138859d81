"""Training: one thin module per stage kind over transformers/trl, plus checkpoints and run state."""
