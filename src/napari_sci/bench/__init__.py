"""Benchmark harness: napari-sci against classical and neural codecs at equal bits per voxel.

Every codec turns a volume into ONE byte string from which its decoder rebuilds the volume in its
dtype, shape and value range; the size counted is ``len()`` of that string (see ``side_header.py``).
Fidelity is measured only by :mod:`napari_sci.core.metrics`. The core never imports this package.
"""
