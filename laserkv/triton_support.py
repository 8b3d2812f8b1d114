"""When the engine's Triton kernels (``decode_triton``, ``scorers.window_mass_triton``) run: a
CUDA bf16/fp16 tensor with a power-of-two head dim, a torch build that ships Triton, and the
kernel's comparison switch not set to ``0``."""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

HAS_TRITON = importlib.util.find_spec("triton") is not None
"""Triton ships with CUDA builds of torch; CPU builds have none."""
HEAD_DIMS = (32, 64, 128, 256)


def runs_on(tensor: Tensor, switch_env: str) -> bool:
    """Whether a Triton kernel runs for ``tensor`` ((..., head_dim)) unless ``switch_env=0``."""
    return (
        HAS_TRITON
        and tensor.is_cuda
        and tensor.dtype in (torch.bfloat16, torch.float16)
        and int(tensor.shape[-1]) in HEAD_DIMS
        and os.environ.get(switch_env, "1") != "0"
    )
