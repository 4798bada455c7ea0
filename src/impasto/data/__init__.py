"""impasto.data."""
