"""Dock widgets: partition preview, background compression with a live plot, side-by-side compare."""
