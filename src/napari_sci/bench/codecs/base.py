"""What every benchmarked codec provides: compress to a byte target, decompress from bytes alone."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from napari_sci.bench.search import Knob, TrialCache, search
from napari_sci.bench.settings import BenchSettings
from napari_sci.bench.side_header import SideInfo, ValueMap, pack, unpack, value_map


@dataclass(frozen=True)
class Target:
    """A size target in bits per voxel, and the byte count it allows (floor, as the core's budget)."""

    bpv: float
    n_voxels: int

    @property
    def bytes(self) -> int:
        return math.floor(self.bpv * self.n_voxels / 8)


@dataclass(frozen=True)
class Compressed:
    """A codec's output for one target, with how it was reached.

    ``blob`` is everything the decoder gets; ``seconds`` is one encoding at the chosen setting and
    ``search_seconds`` all encodings the rate search made (0 for codecs that take a budget directly).
    """

    blob: bytes
    knob: str
    knob_value: float | None
    seconds: float
    search_seconds: float = 0.0
    evaluations: int = 1
    notes: tuple[str, ...] = ()


class Codec(ABC):
    """A codec under test; built with the run's settings."""

    name: ClassVar[str]
    summary: ClassVar[str]

    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings

    def missing(self) -> str | None:
        """Why this codec cannot run here (None when it can)."""
        return None

    @abstractmethod
    def compress(self, volume: np.ndarray, target: Target, cache: TrialCache | None = None) -> Compressed:
        """Encode ``volume`` in at most ``target.bytes`` bytes, as closely as the codec allows."""

    @abstractmethod
    def decompress(self, blob: bytes) -> np.ndarray:
        """Rebuild the volume (dtype, shape, range) from ``blob`` and nothing else."""


class KnobCodec(Codec):
    """A codec with a quality knob, driven to the target by :func:`~napari_sci.bench.search.search`.

    Subclasses give the knob, ``encode_payload`` (the codec's own stream) and ``decode_payload``; the
    side header (``side_header.py``) is added and counted here.
    """

    knob: ClassVar[Knob]
    bits: ClassVar[int | None] = None

    def codes_map(self, side: SideInfo) -> ValueMap | None:
        """The value map this codec's input goes through (None: raw values)."""
        return None if self.bits is None else value_map(side, self.bits)

    @abstractmethod
    def encode_payload(self, volume: np.ndarray, side: SideInfo, value: float) -> bytes:
        """The codec's stream for ``volume`` at knob ``value``."""

    @abstractmethod
    def decode_payload(self, payload: bytes, side: SideInfo) -> np.ndarray:
        """The volume, in ``side.dtype``, from the codec's stream."""

    def encode(self, volume: np.ndarray, value: float) -> bytes:
        side = SideInfo.of(volume)
        return pack(side, self.encode_payload(volume, side, value))

    def compress(self, volume: np.ndarray, target: Target, cache: TrialCache | None = None) -> Compressed:
        outcome = search(lambda value: self.encode(volume, value), self.knob, target.bytes, cache,
                         self.settings.tolerance, self.settings.max_evals)
        trial = outcome.trial
        assert trial.blob is not None
        notes = [n for n in (outcome.note,) if n]
        mapping = self.codes_map(SideInfo.of(volume))
        if mapping is not None:
            notes.append(mapping.note())
        return Compressed(trial.blob, self.knob.name, trial.value, trial.seconds, outcome.seconds,
                          outcome.evaluations, tuple(notes))

    def decompress(self, blob: bytes) -> np.ndarray:
        side, payload = unpack(blob)
        return self.decode_payload(payload, side)
