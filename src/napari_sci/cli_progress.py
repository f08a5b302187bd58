"""A terminal progress bar (tqdm, on stderr) driven by the codec's progress events."""

from __future__ import annotations

import math
import sys
from types import TracebackType
from typing import Any

from napari_sci.core.events import FitFinished, FitProgress, FitStarted, PartitionDone, StageStarted
from napari_sci.core.target_quality import QualityTry


class EncodeProgress:
    """Callable event sink: ``encode(..., on_event=EncodeProgress())``; use as a context manager."""

    def __init__(self, enabled: bool = True, stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._bar: Any = None
        self._done = 0

    def __enter__(self) -> EncodeProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _note(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def __call__(self, event: object) -> None:
        if not self.enabled:
            return
        if isinstance(event, StageStarted) and event.stage in ("partition", "evaluate"):
            self._note(f"{event.stage}: {event.detail}")
        elif isinstance(event, PartitionDone):
            self._note(f"partition: {event.n_blocks} blocks, mean D {event.objective:.4f}, "
                       f"{event.seconds:.1f} s")
        elif isinstance(event, FitStarted):
            from tqdm import tqdm

            self._note(f"fit: {event.n_networks} networks of {event.n_blocks} blocks, "
                       f"{event.n_params} parameters, {event.n_groups} batched groups on "
                       f"{event.device}")
            self._bar = tqdm(total=event.total_steps, file=self.stream, unit="step",
                             dynamic_ncols=True, desc="fit")
        elif isinstance(event, FitProgress) and self._bar is not None:
            self._bar.update(event.step - self._done)
            self._done = event.step
            psnr = "inf" if math.isinf(event.psnr) else f"{event.psnr:.2f}"
            self._bar.set_postfix_str(f"PSNR~{psnr} dB", refresh=False)
        elif isinstance(event, QualityTry):
            self.close()
            verdict = "reaches" if event.passed else "misses"
            self._note(f"try {event.attempt}: {event.bpv:.4f} BPV, {event.n_bytes} bytes -> "
                       f"PSNR {event.psnr:.2f} dB ({verdict} the target), {event.seconds:.0f} s")
        elif isinstance(event, FitFinished):
            self.close()
            if event.reason != "steps":
                self._note(f"fit: stopped after {event.steps} steps ({event.reason})")
