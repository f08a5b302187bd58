"""``python -m napari_sci`` runs the command line."""

import sys

from napari_sci.cli import main

sys.exit(main())
