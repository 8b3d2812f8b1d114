"""What the attention-recall diagnostic costs and whether it is right on the GPU (issue 39).

For each context length and method, on the Llama-3.1-8B architecture with random bf16 weights
(cost does not depend on the weights): the engine's compress-and-answer call, then
``laserkv.diagnostics.attention_recall`` over the positions it kept (one uncompressed prefill of
the context plus the question's forward with its attention mass collected); seconds of each and
their ratio, the recall's mean and its first and last layers. First, a check at a short context:
the recall against the model's own eager attention probabilities (brute force, fp32 sums).

    python -m benchmarks.attention_recall --contexts 4k,16k,32k --methods laser,snapkv,streaming

On CPU the same runs with ``--device cpu --contexts 1k`` (slow; the tests cover correctness there).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from benchmarks.models import random_llama31_8b
from laserkv import hooks
from laserkv.config import GenerationConfig
from laserkv.diagnostics import attention_recall, kept_mask
from laserkv.engine import compress_and_generate
from laserkv.methods import get_method

RATIO = 0.25


def tokens(label: str) -> int:
    """``4k`` -> 4096."""
    return int(label.removesuffix("k")) * 1024 if label.endswith("k") else int(label)


def random_ids(n: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1000, 120000, (n,), generator=generator).tolist()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def eager_recall(
    model: PreTrainedModel, context: list[int], question: list[int], mask: torch.Tensor
) -> list[float]:
    """Brute force: the eager attention probabilities of the whole prompt, the question rows'
    mass on kept / on all context keys per KV head (query heads summed per group), mean per layer."""
    device = hooks.model_device(model)
    kv_heads, n = hooks.n_kv_heads(model), len(context)
    with hooks.attention_implementation(model, "eager"):
        out = model(input_ids=torch.tensor([context + question], device=device), output_attentions=True)
    found = []
    for layer, probabilities in enumerate(out.attentions):
        rows = probabilities[0, :, n:, :n].float().sum(dim=1)  # (heads, n)
        grouped = rows.reshape(kv_heads, -1, n).sum(dim=1)  # (kv_heads, n)
        kept = mask[min(layer, mask.shape[0] - 1)].to(device).expand(kv_heads, n)
        found.append(float(((grouped * kept).sum(-1) / grouped.sum(-1)).mean()))
    return found


def check(model: PreTrainedModel, context_len: int, question_len: int) -> float:
    """The largest difference between ``attention_recall`` and ``eager_recall`` over layers, for
    ``snapkv``'s per-head kept positions at ``context_len``."""
    context, question = random_ids(context_len, 1), random_ids(question_len, 2)
    method = get_method("snapkv", compression_ratio=RATIO, block_size=context_len // 2)
    generated = compress_and_generate(
        model, context, question, method, GenerationConfig(max_new_tokens=1), frozenset()
    )
    mask = kept_mask(generated.kept_positions, context_len)
    fast = attention_recall(model, context, question, mask)
    brute = eager_recall(model, context, question, mask)
    return max(abs(a - b) for a, b in zip(fast, brute, strict=True))


@dataclass(frozen=True)
class Measured:
    """One engine call and the recall over what it kept."""

    context: int
    method: str
    kept: int
    engine_s: float
    recall_s: float
    recall: list[float]


def measure(model: PreTrainedModel, device: str, context_len: int, name: str, question_len: int) -> Measured:
    """One engine call and one recall over what it kept: seconds of each and the recall."""
    context, question = random_ids(context_len, 3), random_ids(question_len, 4)
    method = get_method(name, compression_ratio=RATIO)
    synchronize(device)
    start = time.perf_counter()
    generated = compress_and_generate(
        model, context, question, method, GenerationConfig(max_new_tokens=16), frozenset()
    )
    synchronize(device)
    engine_s = time.perf_counter() - start
    mask = kept_mask(generated.kept_positions, context_len)
    start = time.perf_counter()
    recall = attention_recall(model, context, question, mask)
    synchronize(device)
    return Measured(
        context_len, name, generated.stats.final_cache_length, engine_s, time.perf_counter() - start, recall
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contexts", default="4k,16k,32k")
    parser.add_argument("--methods", default="laser,snapkv,streaming")
    parser.add_argument("--question-tokens", type=int, default=64)
    parser.add_argument(
        "--check-tokens", type=int, default=1024, help="context of the brute-force check (0: none)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    model = random_llama31_8b(
        args.device, torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    )
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"# {name}, torch {torch.__version__}, Llama-3.1-8B architecture, random weights, r = {RATIO}")
    if args.check_tokens:
        difference = check(model, args.check_tokens, args.question_tokens)
        print(f"check at {args.check_tokens} tokens: largest |recall - eager brute force| = {difference:.2e}")
    measure(model, args.device, 4096, args.methods.split(",")[0], args.question_tokens)  # warm-up
    header = (
        "context",
        "method",
        "kept",
        "engine s",
        "recall s",
        "recall / engine",
        "recall % (mean, first, last)",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label in args.contexts.split(","):
        for method in args.methods.split(","):
            row = measure(model, args.device, tokens(label), method, args.question_tokens)
            shares = ", ".join(
                f"{100 * value:.1f}"
                for value in (sum(row.recall) / len(row.recall), row.recall[0], row.recall[-1])
            )
            cells = (
                row.context,
                method,
                row.kept,
                f"{row.engine_s:.3f}",
                f"{row.recall_s:.3f}",
                f"{row.recall_s / row.engine_s:.2f}",
                shares,
            )
            print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
