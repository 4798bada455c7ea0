"""impasto.server."""
