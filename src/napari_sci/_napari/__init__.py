"""The napari plugin: reader, writer, sample data and dock widgets.

This is the only package that imports napari, Qt or magicgui; everything it does is a thin call into
:mod:`napari_sci.core` and :mod:`napari_sci.io`.
"""
