"""impasto.training."""
