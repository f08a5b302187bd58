"""What can be refused before a fit starts, in the GUI's words (tick boxes, not CLI flags).

The core runs the same checks (check_layout, checked_target, check_output_path); here they run in the
GUI thread when *Compress* is clicked, so a fit is never thrown away for a reason known beforehand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_sci.base.config import CompressConfig
from napari_sci.base.volume import ValueRange, check_layout, value_range
from napari_sci.core.codec import checked_target
from napari_sci.errors import SciFileExistsError, SciPathError
from napari_sci.io.container import check_output_path

EXISTS = "{name} already exists in {folder}; tick “overwrite” to replace it, or choose another output file"
NO_FOLDER = "the output folder {folder} does not exist; choose an existing folder for the output file"


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse an output the writer would refuse (exists and not overwriting, no folder, a folder)."""
    if not path.parent.is_dir():
        raise SciPathError(NO_FOLDER.format(folder=path.parent))
    try:
        check_output_path(path, overwrite)
    except SciFileExistsError as error:
        raise SciFileExistsError(EXISTS.format(name=path.name, folder=path.parent)) from error


def check_budget(volume: Any, config: CompressConfig) -> None:
    """Refuse a size target the volume cannot meet, as the encoder would before partitioning.

    An in-memory volume is checked exactly; a lazy one (dask, a decoded ``.sci``) only against what no
    volume of its shape could meet, since measuring its value range would read it all; the encoder
    repeats the exact check in the worker, still before fitting."""
    check_layout(tuple(volume.shape), np.dtype(volume.dtype))
    data = value_range(volume) if isinstance(volume, np.ndarray) else ValueRange(0.0, 0.0)
    checked_target(volume, data, config)


def preflight(volume: Any, config: CompressConfig, path: Path, overwrite: bool,
              budget: bool = True) -> None:
    """Every check that can fail before fitting; raises a ``SciError`` with a one-line message."""
    check_output(path, overwrite)
    if budget:
        check_budget(volume, config)
    else:
        check_layout(tuple(volume.shape), np.dtype(volume.dtype))
