"""The only module that knows transformers internals.

It registers the ``laserkv`` attention function (the block engine's) and ``laserkv_ragged`` (the
kvpress bridge's, after its prefill) with transformers' attention interface (no forward hooks, no
monkey-patching), switches a model to one inside a context manager, runs the
decoder body without the LM head, moves KV tensors in and out of ``DynamicCache.layers``, and
gives transformers a cache whose layers write into a preallocated ``KVBuffer``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AttentionInterface, DynamicCache, PreTrainedModel
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicLayer

from laserkv import kernels
from laserkv.backends import ROW_SCORES, SCORED_ATTENTION, ScoreChannelError, ScoreRequest
from laserkv.errors import UnsupportedModelError
from laserkv.kv_buffer import KVBuffer

ATTENTION_NAME = "laserkv"
SCORE_REQUEST_KWARG = "laserkv_score_request"
DECODE_VISIBLE_KWARG = "laserkv_decode_visible"
RAGGED_ATTENTION_NAME = "laserkv_ragged"
HIDDEN_SLOTS_KWARG = "laserkv_hidden_slots"
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def _unmasked_scale(name: str, query: Tensor, attention_mask: Tensor | None, scaling: float | None) -> float:
    """The logit scale of one of laserkv's attention functions, which are bottom-right causal
    without a mask tensor.

    Raises:
        UnsupportedModelError: the forward passed a mask.
    """
    if attention_mask is not None:
        raise UnsupportedModelError(
            f"the {name} runs without a mask (bottom-right causal); this forward passed one"
        )
    return scaling if scaling is not None else query.shape[-1] ** -0.5


def _laserkv_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """The engine's attention: bottom-right causal over the cache, no mask tensor.

    A decoding step (``DECODE_VISIBLE_KWARG``) runs ``kernels.decode_attention`` over its fixed
    span; otherwise one ``kernels.block_attention`` call gives the output and each row's
    log-sum-exp, and a score request adds the scoring rows' mass from them (``flash``), or
    output and mass come from the materialised probabilities (``eager``, the reference).
    """
    scale = _unmasked_scale("laserkv attention", query, attention_mask, scaling)
    request: ScoreRequest | None = kwargs.pop(SCORE_REQUEST_KWARG, None)
    visible: Tensor | None = kwargs.pop(DECODE_VISIBLE_KWARG, None)
    if visible is not None:
        return kernels.decode_attention(query, key, value, visible, scale), None
    if request is not None:
        layer_index: int = module.layer_idx  # type: ignore[assignment]  # every supported architecture has it
        if layer_index in request.reported_layers:
            raise ScoreChannelError(f"layer {layer_index} reported its scores twice in one forward")
        request.reported_layers.add(layer_index)
        if request.backend in SCORED_ATTENTION:
            return SCORED_ATTENTION[request.backend](query, key, value, scale, request, layer_index), None
    output, lse = kernels.block_attention(query, key, value, scale)
    if request is not None:
        ROW_SCORES[request.backend](query, key, lse, scale, request, layer_index)
    return output, None


AttentionInterface.register(ATTENTION_NAME, _laserkv_attention)
# No mask function is registered for it: transformers then builds no mask (attention_mask None).


def _ragged_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """The kvpress bridge's attention after its prefill: ``kernels.ragged_attention`` with this
    layer's hidden slots (``HIDDEN_SLOTS_KWARG``, one (kv_heads, m) bool per layer), so each layer's
    causal part follows its own length and a press's masked keys get no weight."""
    scale = _unmasked_scale("laserkv ragged attention", query, attention_mask, scaling)
    hidden_per_layer: tuple[Tensor, ...] = kwargs.pop(HIDDEN_SLOTS_KWARG)
    layer_index: int = module.layer_idx  # type: ignore[assignment]  # every supported architecture has it
    return kernels.ragged_attention(query, key, value, hidden_per_layer[layer_index], scale), None


AttentionInterface.register(RAGGED_ATTENTION_NAME, _ragged_attention)  # no mask function either


def check_supported(model: PreTrainedModel) -> None:
    """Refuse models the engine cannot run exactly.

    Raises:
        UnsupportedModelError: no rotary positions, sliding-window or soft-capped attention,
            or an architecture outside ``SUPPORTED_MODEL_TYPES``.
    """
    config = model.config
    name = type(model).__name__
    body = getattr(model, model.base_model_prefix, None)
    if body is None or not hasattr(body, "rotary_emb"):
        raise UnsupportedModelError(
            f"{name} has no rotary position embeddings; laserkv keeps keys at their original "
            f"positions and needs RoPE. Supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{name} (model_type {config.model_type!r}) is not supported; "
            f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    layer_types = getattr(config, "layer_types", None) or []
    uses_window = any(kind != "full_attention" for kind in layer_types)
    if uses_window or (
        getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    ):
        raise UnsupportedModelError(
            f"{name} uses sliding-window attention, which a compressed cache cannot reproduce; "
            "use a checkpoint whose config disables it (sliding_window=None)"
        )


@contextmanager
def attention_implementation(model: PreTrainedModel, name: str) -> Iterator[None]:
    """Run ``model`` with the attention implementation ``name``; restore its own on exit."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def laserkv_attention(model: PreTrainedModel) -> Any:
    """Run ``model`` with the laserkv attention function; restore its own on exit."""
    return attention_implementation(model, ATTENTION_NAME)


def ragged_attention(model: PreTrainedModel) -> Any:
    """Run ``model`` with the ragged attention function (forwards then pass ``hidden_slots``)."""
    return attention_implementation(model, RAGGED_ATTENTION_NAME)


FUSED_MODULES = ("input_layernorm", "post_attention_layernorm", "mlp")
"""Each decoder layer's element-wise modules ``fuse_layers`` compiles (its RMSNorms; the MLP, whose
SwiGLU product fuses between its GEMMs). Qwen3's per-head norms stay eager: sharing the RMSNorm's
code with other input ranks, they would take it past Dynamo's recompile limit (8), beyond which
every norm silently runs eager."""


_FUSED: weakref.WeakKeyDictionary[PreTrainedModel, int] = weakref.WeakKeyDictionary()
"""Models ``fuse_layers`` compiled, with how many modules."""


def fuse_layers(model: PreTrainedModel) -> int:
    """Compile each decoder layer's element-wise modules (``FUSED_MODULES``) and the final norm in
    place (``nn.Module.compile``, dynamic shapes: one graph serves every block length and the
    decoding step), so their element-wise kernels fuse. Casts round as eager's do
    (``emulate_precision_casts``). Compiling happens at the first forward; under
    ``torch.compiler.set_stance("force_eager")`` the modules run as before. Returns how many modules
    it compiled."""
    body = getattr(model, model.base_model_prefix)
    modules = [body.norm] if isinstance(getattr(body, "norm", None), nn.Module) else []
    for layer in body.layers:
        modules += [layer.get_submodule(path) for path in FUSED_MODULES]
    for module in modules:
        module.compile(dynamic=True, options={"emulate_precision_casts": True})
    _FUSED[model] = len(modules)
    return len(modules)


def engine_path(model: PreTrainedModel) -> dict[str, object]:
    """The path the engine takes on ``model`` as loaded: the block attention kernel
    (``kernels.block_kernel_name``) and how many modules ``fuse_layers`` compiled (0: none)."""
    weight: Tensor = model.get_input_embeddings().weight  # type: ignore[assignment]
    query = torch.empty((1, 1, 1, head_dim(model)), dtype=weight.dtype, device=weight.device)
    return {"block_kernel": kernels.block_kernel_name(query), "fused_modules": _FUSED.get(model, 0)}


def attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """Each decoder layer's self-attention module, in layer order."""
    body = getattr(model, model.base_model_prefix)
    return [layer.self_attn for layer in body.layers]


def _cache_position_hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Put back the ``cache_position`` kwarg transformers >= 5.4 no longer passes to attention
    layers: the slots ``[past, past + q)`` the layer's new tokens take in its cache."""
    if "cache_position" in kwargs:
        return None
    hidden = kwargs["hidden_states"]
    cache = kwargs.get("past_key_values")
    layer_index: int = module.layer_idx  # type: ignore[assignment]
    past = cache.get_seq_length(layer_index) if cache is not None else 0
    kwargs["cache_position"] = torch.arange(past, past + hidden.shape[1], device=hidden.device)
    return args, kwargs


@contextmanager
def cache_position_restored(model: PreTrainedModel) -> Iterator[None]:
    """Attention layers receive ``cache_position`` again (kvpress 0.5.5's hooks read it to tell a
    prefill from a decoding step); removed on exit."""
    handles = [
        module.register_forward_pre_hook(_cache_position_hook, with_kwargs=True)
        for module in attention_modules(model)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def layer_key_probe(model: PreTrainedModel, summarise: Any) -> Iterator[dict[int, Tensor]]:
    """After each attention layer's forward, ``summarise`` its cache layer's keys (1, kv_heads,
    n, d) into the yielded dict (layer index -> summary). Hooks registered later (e.g. a press's)
    run after this one, so a probe entered before a press sees the keys before it compresses them,
    one entered after sees them compressed."""
    summaries: dict[int, Tensor] = {}

    def record(module: nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        layer_index: int = module.layer_idx  # type: ignore[assignment]
        summaries[layer_index] = summarise(kwargs["past_key_values"].layers[layer_index].keys)

    handles = [module.register_forward_hook(record, with_kwargs=True) for module in attention_modules(model)]
    try:
        yield summaries
    finally:
        for handle in handles:
            handle.remove()


def module_attribute(model: PreTrainedModel, name: str) -> list[Any]:
    """Each attention module's attribute ``name`` (None where unset), in layer order."""
    return [getattr(module, name, None) for module in attention_modules(model)]


def clear_module_attribute(model: PreTrainedModel, name: str) -> None:
    """Remove the attribute ``name`` a library set on the attention modules."""
    for module in attention_modules(model):
        if hasattr(module, name):
            delattr(module, name)


def n_layers(model: PreTrainedModel) -> int:
    """Number of decoder layers (= cache layers)."""
    return int(model.config.num_hidden_layers)


def n_kv_heads(model: PreTrainedModel) -> int:
    """Number of key/value heads per layer (fewer than query heads under GQA)."""
    config = model.config
    return int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)


def head_dim(model: PreTrainedModel) -> int:
    """The attention heads' dimension (the config's, else hidden size / attention heads)."""
    config = model.config
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def cache_from_kv(model: PreTrainedModel, keys: list[Tensor], values: list[Tensor]) -> DynamicCache:
    """A ``DynamicCache`` holding the given per-layer (1, kv_heads, n, head_dim) keys and values.

    The tensors are placed in the cache layers as they are (``DynamicCache.update`` would copy
    them once more); the forward then appends new tokens by concatenation, leaving them intact.
    """
    cache = DynamicCache(config=model.config)
    layers = list(cache.layers)
    if len(layers) != len(keys) or not all(type(layer) is DynamicLayer for layer in layers):
        for layer_index, (layer_keys, layer_values) in enumerate(zip(keys, values, strict=True)):
            cache.update(layer_keys, layer_values, layer_index)  # the copying path
        return cache
    for layer, layer_keys, layer_values in zip(layers, keys, values, strict=True):
        assert isinstance(layer, DynamicLayer)
        layer.dtype, layer.device = layer_keys.dtype, layer_keys.device
        layer.keys, layer.values = layer_keys, layer_values
        layer.is_initialized = True
    return cache


def kv_from_cache(cache: DynamicCache) -> tuple[list[Tensor], list[Tensor]]:
    """The per-layer keys and values a ``DynamicCache`` holds."""
    keys: list[Tensor] = [layer.keys for layer in cache.layers]  # type: ignore[union-attr,misc]
    values: list[Tensor] = [layer.values for layer in cache.layers]  # type: ignore[union-attr,misc]
    return keys, values


class _BufferLayer(CacheLayerMixin):
    """One cache layer writing into a ``KVBuffer``: a block forward writes its new tokens at slots
    ``[start, start + m)`` and attends over ``[0, start + m)``; a decoding step writes at the
    device index ``slot`` and attends over the fixed span ``[0, span)``."""

    is_sliding = False

    def __init__(self, buffer: KVBuffer, layer: int, start: int, slot: Tensor | None, span: int) -> None:
        super().__init__()
        self.buffer, self.layer, self.start, self.slot, self.span = buffer, layer, start, slot, span
        self.is_initialized = True

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        return None

    def update(
        self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        keys, values = self.buffer.layer_view(self.layer, self.span)
        if self.slot is not None:
            keys.index_copy_(2, self.slot, key_states)
            values.index_copy_(2, self.slot, value_states)
            return keys, values
        self.buffer.write(self.layer, self.start, key_states, value_states)
        return self.buffer.layer_view(self.layer, self.start + int(key_states.shape[2]))

    def get_mask_sizes(self, query_length: int, *args: Any) -> tuple[int, int]:
        return self.start + query_length, 0

    def get_seq_length(self) -> int:
        return self.start

    def get_max_length(self) -> int:
        return self.buffer.capacity


def buffer_cache(buffer: KVBuffer) -> Cache:
    """A transformers cache whose forward writes its new tokens after ``buffer``'s slots in use
    (the caller advances ``buffer.length`` afterwards)."""
    layers = [_BufferLayer(buffer, index, buffer.length, None, 0) for index in range(buffer.n_layers)]
    return Cache(layers=layers)  # type: ignore[arg-type]


def decode_cache(buffer: KVBuffer, slot: Tensor, span: int) -> Cache:
    """A transformers cache for decoding steps: each writes its token at the (1,) device index
    ``slot`` and attends over ``buffer``'s slots ``[0, span)`` (same shapes at every step)."""
    layers = [_BufferLayer(buffer, index, 0, slot, span) for index in range(buffer.n_layers)]
    return Cache(layers=layers)  # type: ignore[arg-type]


def allocate_buffer(model: PreTrainedModel, capacity: int) -> KVBuffer:
    """An empty ``KVBuffer`` of ``capacity`` slots shaped for ``model``'s cache, on its device."""
    weight: Tensor = model.get_input_embeddings().weight  # type: ignore[assignment]
    dtype = weight.dtype
    return KVBuffer.allocate(
        n_layers(model), n_kv_heads(model), head_dim(model), capacity, dtype, model_device(model)
    )


def forward_body(
    model: PreTrainedModel,
    input_ids: Tensor,
    position_ids: Tensor,
    cache: Cache,
    score_request: ScoreRequest | None = None,
    decode_visible: Tensor | None = None,
    hidden_slots: tuple[Tensor, ...] | None = None,
) -> Tensor:
    """Run the decoder body (no LM head) over ``input_ids`` appended to ``cache``.

    The causal mask follows slot order: new tokens see every cached slot and earlier new tokens.

    Args:
        input_ids: (1, n) token ids; position_ids: (1, n) their true positions.
        cache: extended in place with the new tokens' keys and values.
        score_request: when given, every layer adds the question rows' attention mass to it.
        decode_visible: a decoding step over a ``decode_cache``: its (span,) visible slots.
        hidden_slots: under ``ragged_attention``, each layer's (kv_heads, m) hidden cache slots.

    Raises:
        ScoreChannelError: a score request that some layer never received.

    Returns:
        (1, n, hidden) final hidden states.
    """
    body = getattr(model, model.base_model_prefix)
    extra: dict[str, Any] = {SCORE_REQUEST_KWARG: score_request} if score_request is not None else {}
    if decode_visible is not None:
        extra[DECODE_VISIBLE_KWARG] = decode_visible
    if hidden_slots is not None:
        extra[HIDDEN_SLOTS_KWARG] = hidden_slots
    output = body(
        input_ids=input_ids, position_ids=position_ids, past_key_values=cache, use_cache=True, **extra
    )
    if score_request is not None:
        score_request.check_reported(n_layers(model))
    return output.last_hidden_state


def next_token_logits(model: PreTrainedModel, last_hidden: Tensor) -> Tensor:
    """LM-head logits for one position: (1, hidden) -> (1, vocab) fp32."""
    head = model.get_output_embeddings()
    assert head is not None, "a causal LM has an output embedding"
    return head(last_hidden).float()


def eos_token_ids(model: PreTrainedModel, tokenizer: Any) -> frozenset[int]:
    """Every end-of-sequence id of the tokenizer and of the model's generation config."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(token) for token in source)
    return frozenset(ids)


def model_device(model: PreTrainedModel) -> torch.device:
    """The device of the input embeddings (where input ids go)."""
    weight: Tensor = model.get_input_embeddings().weight  # type: ignore[assignment]
    return weight.device
