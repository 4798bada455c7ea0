"""impasto.losses."""
