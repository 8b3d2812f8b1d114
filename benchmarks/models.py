"""Models for speed and memory measurements: the Llama-3.1-8B architecture built from its config
with random bf16 weights on the GPU (cost does not depend on the weight values)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

LLAMA31_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    rope_scaling={
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    tie_word_embeddings=False,
)
"""meta-llama/Llama-3.1-8B-Instruct's config.json, architecture fields."""

LLAMA31_8B_PARAMETERS = 8_030_261_248
LLAMA31_8B_MATMUL_PARAMETERS = LLAMA31_8B_PARAMETERS - 2 * 128256 * 4096
"""Weights a prefill multiplies: all but the embedding table and the LM head (6.98e9)."""


def random_llama31_8b(
    device: str = "cuda", dtype: torch.dtype = torch.bfloat16, seed: int = 0
) -> PreTrainedModel:
    """The 8B architecture with random weights, built directly on ``device`` (SDPA attention)."""
    torch.manual_seed(seed)
    config = LlamaConfig(**LLAMA31_8B)  # type: ignore[arg-type]
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, torch_dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def save_random_llama31_8b(directory: str, tokenizer_source: str, seed: int = 0) -> None:
    """Write the random-weight 8B model as a checkpoint directory that workers load with
    ``from_pretrained``, with the tokenizer (and chat template) of ``tokenizer_source`` (any
    tokenizer whose ids fit the 128256-token vocabulary)."""
    from transformers import AutoTokenizer

    from laserkv.model_sources import resolve_model_path

    model = random_llama31_8b("cuda" if torch.cuda.is_available() else "cpu", seed=seed)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(resolve_model_path(tokenizer_source)).save_pretrained(directory)
