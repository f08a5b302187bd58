"""The lowest layer: plain types and arithmetic every other package shares; no torch, no file formats.

Configs, block-tree geometry, network shapes, value ranges and memory estimates. Imports only
``napari_sci.errors``, numpy and the standard library (tests/test_layers.py checks it).
"""
