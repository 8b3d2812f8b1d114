"""``kvpress``: a press of NVIDIA kvpress, run by the bridge (``laserkv.kvpress_bridge``) with
kvpress's own semantics: the whole context is prefilled in one forward with the press's hooks,
which compress each layer's cache; the question follows outside the compressed context, or inside
it when ``query_aware`` (kvpress's evaluation ``query_aware``: the question is appended to the
context before compression).

``PRESSES`` names each press as kvpress's evaluation registry does (``evaluation/
evaluate_registry.py`` at github.com/NVIDIA/kvpress 8bb29b9) and builds the same press; only the
presses that run offline on a prefill are listed (the others need weights or statistics from the
Hugging Face hub, change the tokenizer, or compress while decoding). The press's own parameters
are flat parameters named ``press.<field>`` (e.g. ``press.window_size``); the compression ratio
comes from the method's budget. kvpress is imported only when a press is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from laserkv.checks import check_bool, is_number
from laserkv.errors import ConfigError, MissingPackageError
from laserkv.protocol import QUERY_AGNOSTIC, QUERY_AWARE
from laserkv.selectors.base import BlockEvidence, Selector

SETUP_COMMAND = "bash scripts/setup_kvpress.sh"
PRESS_PREFIX = "press."
NESTED_FIELDS = ("press", "base_press")


@dataclass(frozen=True)
class PressSpec:
    """How to build one registry press: a kvpress class, its arguments, an inner press.

    Attributes:
        cls: the class name exported by ``kvpress``.
        arguments: constructor arguments that differ from the class defaults.
        inner: the press it wraps (AdaKV, ChunkKV, Block, ...), passed as ``press``.
        attention: the attention implementation the press needs (``eager`` when it reads the
            attention weights, as kvpress's evaluation sets it for ``ObservedAttentionPress``).
        rounds: the press keeps ``round(n * (1 - ratio))`` tokens (PyramidKV's layer budgets)
            where the others truncate, ``int(n * (1 - ratio))`` (``kvpress_bridge.press_ratio``).
    """

    cls: str
    arguments: tuple[tuple[str, object], ...] = ()
    inner: PressSpec | None = None
    attention: str = "sdpa"
    rounds: bool = False


def _spec(
    cls: str,
    inner: PressSpec | None = None,
    attention: str = "sdpa",
    rounds: bool = False,
    **arguments: object,
) -> PressSpec:
    return PressSpec(cls, tuple(sorted(arguments.items())), inner, attention, rounds)


PRESSES: dict[str, PressSpec] = {
    "snapkv": _spec("SnapKVPress"),
    "pyramidkv": _spec("PyramidKVPress", rounds=True),
    "adakv_snapkv": _spec("AdaKVPress", _spec("SnapKVPress")),
    "expected_attention": _spec("AdaKVPress", _spec("ExpectedAttentionPress", epsilon=1e-2)),
    "knorm": _spec("KnormPress"),
    "tova": _spec("TOVAPress"),
    "streaming_llm": _spec("StreamingLLMPress"),
    "observed_attention": _spec("ObservedAttentionPress", attention="eager"),
    "random": _spec("RandomPress"),
    "keydiff": _spec("KeyDiffPress"),
    "block_keydiff": _spec("BlockPress", _spec("KeyDiffPress"), block_size=128),
    "chunkkv": _spec("ChunkKVPress", _spec("SnapKVPress"), chunk_length=20),
    "lagkv": _spec("LagKVPress"),
    "cur": _spec("CURPress"),
    "compactor": _spec("CompactorPress"),
    "adakv_compactor": _spec("AdaKVPress", _spec("CompactorPress")),
}
"""Registry name -> press (kvpress's evaluation registry names; see the module docstring)."""


def kvpress_module() -> Any:
    """The ``kvpress`` package.

    Raises:
        ConfigError: it is not installed (the message gives the set-up command).
    """
    try:
        return importlib.import_module("kvpress")
    except ImportError as error:
        raise MissingPackageError("kvpress", SETUP_COMMAND, str(error)) from None


def _levels(spec: PressSpec) -> list[PressSpec]:
    """The spec and the presses it wraps, outermost first."""
    return [spec, *(_levels(spec.inner) if spec.inner is not None else [])]


def _tunable_fields(cls: type) -> dict[str, object]:
    """A press class's scalar parameters and their defaults (not the ratio, not nested presses,
    not private fields)."""
    fields: dict[str, object] = {}
    for item in dataclasses.fields(cls):
        if item.name == "compression_ratio" or item.name in NESTED_FIELDS or item.name.startswith("_"):
            continue
        if item.default is dataclasses.MISSING:
            continue
        if item.default is None or isinstance(item.default, bool | int | float | str):
            fields[item.name] = item.default
    return fields


def press_defaults(name: str) -> dict[str, object]:
    """``press.<field>`` -> the value the registry press has (class default or registry argument)."""
    module = kvpress_module()
    defaults: dict[str, object] = {}
    for level in _levels(PRESSES[name]):
        level_fields = _tunable_fields(getattr(module, level.cls))
        level_fields.update({key: value for key, value in level.arguments if key in level_fields})
        for key, value in level_fields.items():
            flat = PRESS_PREFIX + key
            assert flat not in defaults, f"press {name!r}: two levels declare {key!r}"
            defaults[flat] = value
    return defaults


def _check_value(name: str, default: object, value: object) -> None:
    """An override must have its default's type (ints count as floats; ``None`` defaults take any
    scalar)."""
    if default is None:
        if value is None or isinstance(value, bool | int | float | str):
            return
    elif isinstance(default, bool):
        if isinstance(value, bool):
            return
    elif isinstance(default, int | float):
        if is_number(value) and (isinstance(default, float) or isinstance(value, int)):
            return
    elif isinstance(value, type(default)):
        return
    kinds = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    kind = "a number, string, true/false or null" if default is None else kinds[type(default)]
    raise ConfigError(name, value, f"{kind} (the press's default is {default!r})")


@dataclass(frozen=True)
class KVPressSelector(Selector):
    """A kvpress press (see the module docstring).

    Attributes:
        press: the registry name (``PRESSES``).
        query_aware: compress the question with the context (kvpress's ``query_aware``).
        press_params: the press parameters set away from the registry's values, as sorted
            ``(press.<field>, value)`` pairs.
    """

    kind = "kvpress"
    description = "a kvpress press through the bridge (whole-context prefill, kvpress's semantics)"
    prefill = "kvpress"
    source = "NVIDIA kvpress 0.5.5 (github.com/NVIDIA/kvpress)"

    press: str = "snapkv"
    query_aware: bool = False
    press_params: tuple[tuple[str, object], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.press not in PRESSES:
            close = difflib.get_close_matches(str(self.press), PRESSES, n=2, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError("press", self.press, f"{hint}a kvpress registry press: {', '.join(PRESSES)}")
        check_bool("query_aware", self.query_aware)
        defaults = press_defaults(self.press)
        for name, value in self.press_params:
            if name not in defaults:
                known = ", ".join(defaults) or "none"
                raise ConfigError(name, value, f"a parameter of press {self.press!r} ({known})")
            _check_value(name, defaults[name], value)
        self.build(0.0)  # the press's own checks, now rather than on a worker

    @property
    def protocol(self) -> str:
        return QUERY_AWARE if self.query_aware else QUERY_AGNOSTIC

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        return ("press", "query_aware")

    @classmethod
    def from_params(cls, params: dict[str, object]) -> tuple[Selector, set[str]]:
        own = {name: params[name] for name in ("press", "query_aware") if name in params}
        press = own.get("press", "snapkv")
        defaults = press_defaults(press) if press in PRESSES else {}
        overrides = {
            name: value
            for name, value in params.items()
            if name.startswith(PRESS_PREFIX) and value != defaults.get(name, object())
        }
        used = set(own) | {name for name in params if name.startswith(PRESS_PREFIX)}
        return cls(**own, press_params=tuple(sorted(overrides.items()))), used  # type: ignore[arg-type]

    @property
    def attention(self) -> str:
        """The attention implementation the press runs under."""
        return PRESSES[self.press].attention

    @property
    def rounds(self) -> bool:
        """Whether the press rounds its kept count instead of truncating it (``PressSpec.rounds``)."""
        return PRESSES[self.press].rounds

    def build(self, compression_ratio: float) -> Any:
        """A fresh kvpress press with this selector's parameters and kvpress's ``compression_ratio``
        (the fraction of the compressed sequence to remove).

        Raises:
            ConfigError: kvpress refused the parameters.
        """
        module = kvpress_module()
        values = {**press_defaults(self.press), **dict(self.press_params)}
        press: Any = None
        for level in reversed(_levels(PRESSES[self.press])):
            cls = getattr(module, level.cls)
            arguments = dict(level.arguments)
            arguments.update({key: values[PRESS_PREFIX + key] for key in _tunable_fields(cls)})
            if press is not None:
                arguments["press"] = press
            if "compression_ratio" in {item.name for item in dataclasses.fields(cls)}:
                arguments["compression_ratio"] = compression_ratio
            try:
                press = cls(**arguments)
            except (AssertionError, ValueError, TypeError) as error:
                raise ConfigError("press", self.press, f"parameters kvpress accepts ({error})") from None
        if hasattr(press, "compression_ratio"):
            press.compression_ratio = compression_ratio  # wrappers pass it to their inner press
        return press

    def select(self, evidence: BlockEvidence, n_select: int) -> Tensor:
        raise NotImplementedError("a kvpress press compresses inside the bridge's prefill")

    def flat_params(self) -> dict[str, object]:
        values = {**press_defaults(self.press), **dict(self.press_params)}
        return {"press": self.press, "query_aware": self.query_aware, **values}

    def flat_defaults(self) -> dict[str, object]:
        return {"press": "snapkv", "query_aware": False, **press_defaults(self.press)}

    def summary(self) -> str:
        changed = ",".join(f"{name[len(PRESS_PREFIX) :]}={value}" for name, value in self.press_params)
        return f"kvpress {self.press}" + (f"[{changed}]" if changed else "")
