"""The ``.sci`` container: byte layout, validated reads, atomic writes, lazy decoded arrays."""
