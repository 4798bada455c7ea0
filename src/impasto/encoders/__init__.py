"""impasto.encoders."""
