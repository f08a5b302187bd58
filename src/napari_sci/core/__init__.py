"""GUI-free compute: partitioning, allocation, fitting, encoding and decoding (no Qt anywhere)."""
