"""impasto.io."""
