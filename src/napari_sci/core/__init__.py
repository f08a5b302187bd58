"""The pipeline, GUI-free: partitioning, allocation, fitting and weight coding, encode (codec.py) and
decode (decoder.py, the lazy array in lazy.py), metrics, and reading input volumes (volume_files.py).

Builds on ``base`` and the byte format in ``io``; never imported by them (tests/test_layers.py).
"""
