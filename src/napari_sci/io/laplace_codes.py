"""The Laplace scale codes shared by every latent-grid tile coding (format 3, models 2 to 4)."""

from __future__ import annotations

import math

import numpy as np

LATENT_LIMIT = 4095
SCALE_CODE_ZERO = 0


def scale_of(code: int) -> float:
    """Laplace scale (in latent units) of a scale code 1..255."""
    return 2.0 ** (code / 16 - 6)


# every code's scale (code 0, "not coded", as 1.0), for per-symbol scales; scalar pow, as model 2
SCALES = np.array([1.0] + [scale_of(code) for code in range(1, 256)])


def scale_code_for(scale: float) -> int:
    """The nearest scale code (1..255) to a Laplace scale."""
    if not scale > 0:
        return 1
    return int(np.clip(round(16 * (math.log2(scale) + 6)), 1, 255))


def laplace_bits_each(symbols: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """−log2 P of each integer symbol under the zero-mean quantised Laplace of ``scale`` (one per
    symbol, or one for all), reflected into the lower tail so no probability is a difference of two
    numbers near one."""
    d = np.abs(np.asarray(symbols, np.float64))
    upper = 0.5 - d
    low = 0.5 * np.exp((-0.5 - d) / scale)
    high = np.where(upper <= 0, 0.5 * np.exp(np.minimum(upper, 0) / scale),
                    1 - 0.5 * np.exp(-np.maximum(upper, 0) / scale))
    return -np.log2(np.maximum(high - low, 1e-300))
