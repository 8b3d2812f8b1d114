"""The answer's token loop and the decoding steps it runs: over a transformers cache (the kvpress
bridge's), or over the call's ``KVBuffer`` with the same shapes at every step, captured once as a
CUDA graph and replayed on CUDA."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import PreTrainedModel

from laserkv import hooks, switches
from laserkv.config import GenerationConfig
from laserkv.kv_buffer import KVBuffer

CUDA_GRAPHS_ENV = switches.CUDA_GRAPHS_ENV
"""Set to ``0`` to run buffer decoding steps eagerly on CUDA too (a comparison switch)."""

Step = Callable[[int, int], Tensor]
"""``step(token, position)``: forward one token at its true position; (1, vocab) fp32 logits."""


SDPA_WITHOUT_CUDNN = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)


@contextmanager
def sdpa_without_cudnn() -> Iterator[None]:
    """PyTorch's SDPA with its other backends only (flash, memory-efficient, math), not cuDNN.

    For forwards over a transformers cache whose layers hold different numbers of keys
    (PyramidKV): every layer's key length is then a new SDPA shape at every step, and cuDNN
    builds a plan per new shape (an 8B model at 32k: 54.6 s of decoding with cuDNN, 1.51 s
    without; docs/benchmarks.md). Outside CUDA it changes nothing.
    """
    with sdpa_kernel(list(SDPA_WITHOUT_CUDNN)):
        yield


def next_token(logits: Tensor, temperature: float, sampler: torch.Generator | None) -> int:
    """Greedy argmax, or a draw from softmax(logits / temperature) with ``sampler``."""
    if sampler is None:
        return int(logits.argmax())
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=sampler))


def decode_tokens(
    first_logits: Tensor,
    step: Step,
    first_position: int,
    generation: GenerationConfig,
    eos_ids: frozenset[int],
    device: torch.device,
) -> list[int]:
    """Greedy or sampled tokens (``generation.temperature > 0``, seeded) until an EOS or
    ``max_new_tokens``; the EOS is not returned and the last token is never forwarded.

    Args:
        first_logits: (1, vocab) logits after the question.
        first_position: the true position of the first generated token.
    """
    sampler = None
    if generation.temperature > 0:
        sampler = torch.Generator(device=device).manual_seed(generation.seed)
    token_ids: list[int] = []
    logits, position = first_logits, first_position
    while len(token_ids) < generation.max_new_tokens:
        token = next_token(logits[0], generation.temperature, sampler)
        if token in eos_ids:
            break
        token_ids.append(token)
        if len(token_ids) == generation.max_new_tokens:
            break
        logits = step(token, position)
        position += 1
    return token_ids


def cache_steps(
    model: PreTrainedModel, cache: object, hidden_slots: tuple[Tensor, ...] | None = None
) -> Step:
    """Steps that append to a transformers cache (shapes grow; no graph), passing each layer's
    hidden slots when the cache is ragged (``hooks.ragged_attention``)."""
    device = hooks.model_device(model)

    def step(token: int, position: int) -> Tensor:
        # filled on the device (a copy from host memory would wait for the GPU at every step)
        ids = torch.full((1, 1), token, dtype=torch.long, device=device)
        positions = torch.full((1, 1), position, dtype=torch.long, device=device)
        hidden = hooks.forward_body(model, ids, positions, cache, hidden_slots=hidden_slots)  # type: ignore[arg-type]
        return hooks.next_token_logits(model, hidden[:, -1])

    return step


class BufferSteps:
    """Decoding steps over a ``KVBuffer``: each writes its token's keys and values at the next slot
    (a device index) and attends over the fixed span ``[0, span)`` (default: the whole buffer,
    whose contiguous values split into partial sums) with a visibility vector, so
    every step has the same shapes. On CUDA the first step runs eagerly (the warm-up) and is then
    captured as a CUDA graph that later steps replay; elsewhere, or with
    ``LASERKV_CUDA_GRAPHS=0``, every step runs eagerly. Replaying runs the same kernels, so the
    tokens do not depend on the graph."""

    def __init__(self, model: PreTrainedModel, buffer: KVBuffer, span: int | None = None) -> None:
        span = buffer.capacity if span is None else span
        if span > buffer.capacity or span < buffer.length:
            raise ValueError(f"span {span} outside the buffer's {buffer.length}..{buffer.capacity} slots")
        device = hooks.model_device(model)
        self.model, self.buffer, self.span = model, buffer, span
        self.ids = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.position = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.visible = torch.zeros(span, dtype=torch.bool, device=device)
        self.visible[: buffer.length] = True
        for store in (*buffer.keys, *buffer.values):  # hidden slots get probability 0: no NaN to meet
            store[:, :, buffer.length : span].zero_()
        self.cache = hooks.decode_cache(buffer, self.slot, span)
        self.use_graph = device.type == "cuda" and os.environ.get(CUDA_GRAPHS_ENV, "1") != "0"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Tensor | None = None
        self.device = device

    def _forward(self) -> Tensor:
        hidden = hooks.forward_body(
            self.model, self.ids, self.position, self.cache, decode_visible=self.visible
        )
        return hooks.next_token_logits(self.model, hidden[:, -1])

    def _warm_up_and_capture(self) -> Tensor:
        """Run this step eagerly on a side stream, then capture it (capturing runs nothing)."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            logits = self._forward()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.output = self._forward()
        except RuntimeError as error:  # an op this torch cannot capture: keep decoding eagerly
            warnings.warn(f"decoding without CUDA graphs: capture failed ({error})", stacklevel=2)
            self.use_graph = False
            return logits
        self.graph = graph
        return logits

    def __call__(self, token: int, position: int) -> Tensor:
        slot = self.buffer.length
        if slot >= self.span:
            raise ValueError(f"decoding step {slot} beyond the span of {self.span} slots")
        self.ids.fill_(token)
        self.position.fill_(position)
        self.slot.fill_(slot)
        self.visible[slot] = True
        if not self.use_graph:
            logits = self._forward()
        elif self.graph is None:
            logits = self._warm_up_and_capture()
        else:
            self.graph.replay()
            assert self.output is not None
            logits = self.output
        self.buffer.length += 1
        return logits
