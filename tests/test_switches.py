"""The engine's comparison switches are the names the modules read, and a run reports those set."""

from __future__ import annotations

import pytest

from laserkv import decode_triton, decoding, kernels, modeling, switches
from laserkv.scorers import window_mass_triton


def test_every_switch_a_module_reads_is_listed_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    read = {kernels.BLOCK_KERNEL_ENV, kernels.FLASH_ENV, modeling.FUSED_LAYERS_ENV, decoding.CUDA_GRAPHS_ENV,
            window_mass_triton.TRITON_ENV, decode_triton.TRITON_ENV}  # fmt: skip
    assert set(switches.ENGINE_SWITCHES) == read and len(read) == len(switches.ENGINE_SWITCHES)
    for name in read:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(modeling.FUSED_LAYERS_ENV, "0")
    monkeypatch.setenv("LASERKV_CACHE", "/tmp/elsewhere")  # not a switch
    assert switches.engine_switches() == {"LASERKV_FUSED_LAYERS": "0"}
