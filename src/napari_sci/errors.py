"""One hierarchy for every error napari-sci raises on purpose.

Everything derives from :class:`SciError` (a ``ValueError``), so callers can catch one class and the
CLI can print one line instead of a traceback.
"""

from __future__ import annotations


class SciError(ValueError):
    """Base class of all deliberate napari-sci errors."""


class SciInputError(SciError):
    """The input volume (or its file) cannot be compressed as given."""


class SciMemoryError(SciInputError):
    """A volume to compress, or a region to decode, needs more memory than is available."""


class SciConfigError(SciError):
    """A setting is out of range or inconsistent with another."""


class SciBudgetError(SciError):
    """The requested size cannot hold a useful encoding (or is larger than the raw data)."""


class SciFormatError(SciError):
    """A ``.sci`` file is malformed, truncated or not a ``.sci`` file at all."""


class SciChecksumError(SciFormatError):
    """A CRC-32 in a ``.sci`` file does not match its bytes: the file is corrupt."""


class SciVersionError(SciFormatError):
    """A ``.sci`` file has a format version this reader does not know."""


class SciPathError(SciError):
    """A path cannot be used: missing folder, unreadable file, input and output the same."""


class SciFileExistsError(SciPathError):
    """The output file exists and overwriting was not asked for."""


class SciStoreMismatchError(SciError):
    """A ``.sci.zarr`` store exists with other parameters than this run's: resuming would mix encodings."""


class SciCancelledError(SciError):
    """Work was stopped on request; nothing was written."""
