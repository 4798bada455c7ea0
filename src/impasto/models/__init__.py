"""impasto.models."""
