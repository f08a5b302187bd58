"""Spectrum concentration D of a block (paper Eq. 1).

D = (sum of the M largest |FFT| magnitudes) / (sum of all |FFT| magnitudes). A block whose energy sits
in few frequencies (smooth, or constant) has D near 1 and needs few parameters; a busy block has a
small D. Magnitudes, not power, as the authors' code; for non-negative data the largest is the DC term.
"""

from __future__ import annotations

import numpy as np
import scipy.fft


def spectrum_concentration(block: np.ndarray, top_m: int = 1) -> float:
    """D of one block; 1.0 for an all-zero block (nothing to spread)."""
    magnitudes = np.abs(scipy.fft.fftn(np.asarray(block, dtype=np.float64), workers=-1)).ravel()
    total = float(magnitudes.sum())
    if total <= 0.0:
        return 1.0
    m = min(top_m, magnitudes.size)
    top = np.partition(magnitudes, magnitudes.size - m)[magnitudes.size - m:]
    return float(top.sum() / total)


def tree_concentrations(volume: np.ndarray, slices: list[tuple[slice, ...]],
                        top_m: int = 1) -> np.ndarray:
    """D for each box of ``volume`` given as a tuple of slices."""
    return np.array([spectrum_concentration(volume[s], top_m) for s in slices], dtype=np.float64)
