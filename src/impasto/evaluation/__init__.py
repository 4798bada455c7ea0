"""impasto.evaluation."""
