"""impasto.decoders."""
