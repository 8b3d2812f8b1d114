"""Pieces of the engine timed on their own on a CUDA GPU, for ``benchmarks.engine_speed``'s
targets: one block forward over a cache (with and without scoring), a plain prefill, and one
decoding step (CUDA graph, eager, transformers' own ``DynamicCache`` + SDPA loop) against the
HBM floor. Caches are filled with random keys and values: the cost does not depend on them."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import DynamicCache

from benchmarks.models import LLAMA31_8B_PARAMETERS
from laserkv import hooks
from laserkv.backends import ScoreRequest
from laserkv.decoding import BufferSteps
from laserkv.engine import forward_into
from laserkv.kv_buffer import KVBuffer

HBM_BYTES_PER_S = {"H200": 4.8e12, "H100": 3.35e12}  # SXM peak bandwidth
VOCAB = 128000


def cuda_seconds(run: Callable[[], Any], repeats: int = 5, warmups: int = 1) -> float:
    """Median wall seconds of ``run`` (CUDA-synchronised), after ``warmups`` untimed runs."""
    for _ in range(warmups):
        run()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def filled_buffer(model: Any, n_cache: int, spare: int) -> KVBuffer:
    """A buffer of ``n_cache + spare`` slots whose first ``n_cache`` hold random keys and values."""
    buffer = hooks.allocate_buffer(model, n_cache + spare)
    for store in (*buffer.keys, *buffer.values):
        store.normal_()
    buffer.length = n_cache
    return buffer


def random_ids(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))


def block_forward_seconds(model: Any, n_cache: int, block: int, question: int, scored: bool) -> float:
    """One ``[block | question]`` forward over an ``n_cache``-slot cache; ``scored``: with a flash
    score request over every slot of the forward (the widest window any selector asks for)."""
    buffer = filled_buffer(model, n_cache, block + question)
    ids = random_ids(block + question)
    positions = torch.arange(n_cache, n_cache + block + question)

    def run() -> None:
        buffer.truncate(n_cache)
        request = None
        if scored:
            totals = torch.zeros(1, 1, n_cache + block, device="cuda")
            request = ScoreRequest("flash", question, 0, totals)
        forward_into(model, buffer, ids, positions, request)

    with torch.inference_mode(), hooks.laserkv_attention(model):
        seconds = cuda_seconds(run)
    torch.cuda.empty_cache()
    return seconds


def plain_prefill_seconds(model: Any, n_tokens: int) -> float:
    """transformers' own forward of ``n_tokens`` with no cache (the model's SDPA attention)."""
    ids = random_ids(n_tokens)[None].cuda()
    body = getattr(model, model.base_model_prefix)
    with torch.inference_mode():
        return cuda_seconds(lambda: body(input_ids=ids, use_cache=False))


def decode_step_seconds(model: Any, n_cache: int, kind: str, steps: int = 32) -> float:
    """Seconds per decoded token over an ``n_cache``-token cache, the token read back to the host
    each step as the engine's loop does. ``kind``: ``graph`` (the engine on CUDA), ``eager``
    (the same steps without the graph) or ``dynamic`` (transformers' ``DynamicCache`` with SDPA,
    the engine's loop before issue 19)."""
    with torch.inference_mode():
        if kind == "dynamic":
            buffer = filled_buffer(model, n_cache, 0)
            cache = DynamicCache(config=model.config)
            for layer, (keys, values) in enumerate(zip(buffer.keys, buffer.values, strict=True)):
                cache.update(keys, values, layer)
            del buffer
            position = [n_cache]
            body = getattr(model, model.base_model_prefix)

            def step() -> int:
                ids = torch.tensor([[7]], device="cuda")
                where = torch.tensor([[position[0]]], device="cuda")
                hidden = body(input_ids=ids, position_ids=where, past_key_values=cache, use_cache=True)
                position[0] += 1
                return int(hooks.next_token_logits(model, hidden.last_hidden_state[:, -1]).argmax())

            return _per_step(step, steps)
        buffer = filled_buffer(model, n_cache, steps + 8)
        with hooks.laserkv_attention(model):
            decoder = BufferSteps(model, buffer, n_cache + steps + 8)
            decoder.use_graph = kind == "graph"
            counter = [n_cache]

            def buffer_step() -> int:
                logits = decoder(7, counter[0])
                counter[0] += 1
                return int(logits.argmax())

            return _per_step(buffer_step, steps)


def _per_step(step: Callable[[], int], steps: int) -> float:
    for _ in range(2):  # warm-up (and the graph's capture)
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def hbm_floor_seconds(model: Any, n_cache: int) -> float:
    """Reading the weights one token multiplies (all but the embedding table) and the cache's keys
    and values once, at the GPU's peak HBM bandwidth."""
    name = torch.cuda.get_device_name()
    bandwidth = next((value for key, value in HBM_BYTES_PER_S.items() if key in name), float("nan"))
    config = model.config
    embedding = config.vocab_size * config.hidden_size
    weight_bytes = 2 * (LLAMA31_8B_PARAMETERS - embedding)
    head_dim = config.hidden_size // config.num_attention_heads
    cache_bytes = 2 * 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * n_cache
    return (weight_bytes + cache_bytes) / bandwidth


def kernel_profile(run: Callable[[], Any], row_limit: int = 14) -> str:
    """The CUDA kernels of one ``run`` (after one warm-up), by total time, as profiler's table."""
    run()
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profiler:
        run()
        torch.cuda.synchronize()
    averages = profiler.key_averages()
    total_ms = sum(event.device_time_total for event in averages) / 1000
    table = averages.table(sort_by="device_time_total", row_limit=row_limit, max_name_column_width=70)
    return f"total CUDA kernel time {total_ms:.2f} ms\n{table}"


def main() -> None:
    """``python -m benchmarks.engine_parts --profile decode|block --cache 128k``: the kernels of one
    eager decoding step (the graph replays the same kernels) or of one scored block forward
    (4096 tokens + 64 question rows) over a cache of that size."""
    import argparse

    from benchmarks.models import random_llama31_8b

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", choices=("decode", "block"), required=True)
    parser.add_argument("--cache", default="4k")
    args = parser.parse_args()
    n_cache = int(args.cache.rstrip("k")) * 1024
    model = random_llama31_8b()
    print(f"# {torch.cuda.get_device_name()}: {args.profile}, cache {n_cache}")
    with torch.inference_mode(), hooks.laserkv_attention(model):
        if args.profile == "decode":
            buffer = filled_buffer(model, n_cache, 64)
            decoder = BufferSteps(model, buffer)
            decoder.use_graph = False
            print(kernel_profile(lambda: decoder(7, n_cache)))
            return
        buffer = filled_buffer(model, n_cache, 4096 + 64)
        ids, positions = random_ids(4096 + 64), torch.arange(n_cache, n_cache + 4096 + 64)

        def block() -> None:
            buffer.truncate(n_cache)
            request = ScoreRequest("flash", 64, 0, torch.zeros(1, 1, n_cache + 4096, device="cuda"))
            forward_into(model, buffer, ids, positions, request)

        print(kernel_profile(block))


if __name__ == "__main__":
    main()
