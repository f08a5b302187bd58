"""The ``.sci`` byte format: layout and header (format.py), weight payloads (weights.py), validated
reads and atomic writes (container.py).

numpy, the standard library and constriction only, and nothing of napari_sci above ``base``: a file can
be inspected without torch, and the decoder and models build on it (tests/test_layers.py checks it).
"""
