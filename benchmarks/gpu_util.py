"""GPU utilisation sampled through NVML (``nvidia-ml-py``) in a background thread: the percentage of
each sample period in which a kernel ran on the GPU, as ``nvidia-smi`` reports it."""

from __future__ import annotations

import os
import threading
import time
from typing import Any


def run_gpu_indices(gpus: int) -> list[int] | None:
    """NVML indices of the GPUs a local run with ``gpus`` workers holds: Ray hands out the visible
    GPUs in order, so the first ``gpus`` of ``CUDA_VISIBLE_DEVICES`` (NVML ignores that variable),
    else 0..gpus-1. None where they cannot be told (GPU UUIDs in the variable)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(gpus))
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    if not all(part.isdigit() for part in ids):
        return None
    return [int(part) for part in ids[:gpus]]


class UtilisationSampler:
    """Samples every GPU's utilisation every ``interval_s`` while running (a context manager).

    ``available`` is False where NVML cannot start (no driver, no GPU, no ``pynvml``); then no
    samples are taken and every mean is None."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, list[int]]] = []  # (time.monotonic(), percent per GPU)
        self.available = False
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UtilisationSampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.available = bool(self._handles)
        except Exception:  # any NVML failure means: no utilisation figures
            self.available = False
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()
            self._nvml.nvmlShutdown()

    @property
    def device_count(self) -> int:
        """GPUs sampled (0 without NVML)."""
        return len(self._handles)

    def _run(self) -> None:
        while not self._stop.is_set():
            percent = [self._nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
            self.samples.append((time.monotonic(), percent))
            self._stop.wait(self.interval_s)

    def mean_percent(self, start: float, end: float, devices: range) -> list[float] | None:
        """Mean utilisation of each GPU in ``devices`` over samples taken in [start, end]
        (``time.monotonic()`` times); None without samples there."""
        window = [percent for moment, percent in self.samples if start <= moment <= end]
        if not window:
            return None
        return [sum(percent[i] for percent in window) / len(window) for i in devices]
