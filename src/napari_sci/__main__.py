"""``python -m napari_sci`` runs the command line."""

import sys

from napari_sci.cli import main

if __name__ == "__main__":  # worker processes (Dask, multiprocessing spawn) re-import this module
    sys.exit(main())
