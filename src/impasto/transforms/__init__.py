"""impasto.transforms."""
