"""Chunked ``.sci.zarr`` stores: volumes larger than memory, one SCI bitstream per zarr chunk.

``layout`` (the store's files and attributes), ``codec`` (the zarr codec that decodes a chunk),
``source`` (reading an input lazily), ``task`` (fitting one chunk), ``run`` (the chunks as Dask tasks)
and ``multiscale`` (lazy levels decoded at coarser coordinates). docs/format.md specifies the layout.
"""
