"""The engine's comparison switches: environment variables that pick a kernel or a path for the
same computation (each is documented where it is read; in bf16 two paths may round differently). A
run records the ones set in its manifest and passes them to every worker, so all of its rows ran the
same path. This module imports nothing heavy: result readers use it too."""

from __future__ import annotations

import os

BLOCK_KERNEL_ENV = "LASERKV_BLOCK_KERNEL"
FLASH_ENV = "LASERKV_FLASH_KERNEL"
FUSED_LAYERS_ENV = "LASERKV_FUSED_LAYERS"
CUDA_GRAPHS_ENV = "LASERKV_CUDA_GRAPHS"
TRITON_SCORES_ENV = "LASERKV_TRITON_SCORES"
TRITON_DECODE_ENV = "LASERKV_TRITON_DECODE"
ENGINE_SWITCHES = (
    BLOCK_KERNEL_ENV, FLASH_ENV, FUSED_LAYERS_ENV, CUDA_GRAPHS_ENV, TRITON_SCORES_ENV, TRITON_DECODE_ENV,
)  # fmt: skip


def engine_switches() -> dict[str, str]:
    """The switches set in this process's environment, by name."""
    return {name: os.environ[name] for name in ENGINE_SWITCHES if name in os.environ}
