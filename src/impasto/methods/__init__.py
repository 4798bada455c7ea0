"""impasto.methods."""
