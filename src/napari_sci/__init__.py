"""napari-sci: SCI (Spectrum Concentrated Implicit neural) compression of biomedical volumes.

The public API is small: :func:`compress` an array to ``.sci`` bytes (and optionally a file),
:func:`open_sci` a file (or a chunked ``.sci.zarr`` store) as a lazily decoded array, :func:`decode` a
file (or a region of it) to numpy.
Importing this package loads neither Qt nor torch; they load on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import numpy as np

    from napari_sci.core.codec import EncodeResult
    from napari_sci.core.lazy import SciArray
    from napari_sci.store.multiscale import SciStoreLevel

__all__ = ["__version__", "compress", "decode", "open_sci"]


def compress(array: np.ndarray, *, bpv: float | None = None, ratio: float | None = None,
             psnr: float | None = None, out: str | os.PathLike[str] | None = None, overwrite: bool = False,
             spacing: Sequence[float] | None = None,
             on_event: Callable[[object], None] | None = None, stop: object = None,
             **settings: Any) -> EncodeResult:
    """Compress ``array`` to at most ``bpv`` bits per voxel (or ``ratio``:1) with SCI.

    With ``psnr`` instead, find the smallest file whose decoded PSNR (over the data's range) reaches
    it; ``bpv``/``ratio`` are then the first guess (default 0.1 BPV).

    The latent-grid family (format 3) is the default; ``model="siren"`` uses the paper's SIRENs
    (formats 2 and 1). A setting that only the other family reads is refused, not ignored.
    ``settings`` are the fields of the stage configs, e.g. ``steps``, ``time_limit``, ``seed``,
    ``device``, ``max_blocks``, ``fr``, ``layers``, ``w0``, ``method`` (partition), ``rule``
    (allocation). ``stop`` is a ``threading.Event`` or callable that cancels the fit. When ``out`` is
    given the file is written atomically. Returns the :class:`~napari_sci.core.codec.EncodeResult`.
    """
    from napari_sci.base.config import CompressConfig, compress_config, other_family_settings
    from napari_sci.core.codec import encode
    from napari_sci.errors import SciConfigError

    model = settings.get("model", CompressConfig.model)
    wrong = other_family_settings(model, [k for k in settings if k != "model"])
    if wrong:
        other = "siren" if model == "grid" else "grid"
        raise SciConfigError(f"{', '.join(wrong)} set the {other} model, but the model is {model}; "
                             f"pass model={other!r} to use them")

    if psnr is not None:
        from napari_sci.core.target_quality import FIRST_GUESS_BPV, QualitySearch, compress_to_psnr

        no_size = bpv is None and ratio is None
        first_guess = {"bpv": FIRST_GUESS_BPV} if no_size else {"bpv": bpv, "ratio": ratio}
        config = compress_config(**first_guess, **settings)
        result = compress_to_psnr(array, config, QualitySearch(psnr), spacing, on_event, stop)
    else:
        config = compress_config(bpv=bpv, ratio=ratio, **settings)
        result = encode(array, config, spacing=spacing, on_event=on_event, stop=stop)
    if out is not None:
        result.write(os.fspath(out), overwrite=overwrite)
    return result


def open_sci(path: str | os.PathLike[str], deblocking: bool = True,
             device: str = "cpu") -> SciArray | SciStoreLevel:
    """Open a ``.sci`` file as a lazily decoded, array-like :class:`~napari_sci.core.lazy.SciArray`.

    A chunked ``.sci.zarr`` store opens as its full-resolution
    :class:`~napari_sci.store.multiscale.SciStoreLevel`, whose ``levels`` are the whole multiscale
    pyramid (coarser levels decoded at coarser coordinates; ``deblocking`` applies to single files).
    """
    from napari_sci.store.layout import is_store_path

    if is_store_path(path):
        from napari_sci.store.multiscale import open_store

        return open_store(path, device=device).levels[0]
    from napari_sci.core.lazy import open_sci as _open

    return _open(path, deblocking=deblocking, device=device)


def decode(path: str | os.PathLike[str], roi: Sequence[slice] | None = None,
           deblocking: bool = True) -> np.ndarray:
    """Decode a whole ``.sci`` file, or the region ``roi`` (a tuple of slices), to a numpy array."""
    array = open_sci(path, deblocking=deblocking)
    return array[tuple(roi)] if roi is not None else array[...]
