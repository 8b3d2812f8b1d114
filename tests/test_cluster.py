"""The cluster path on a real local Ray cluster (CPU, loopback only): rows and fields, a worker
killed with SIGKILL mid-run, a driver stopped mid-run and resumed, failing units, foreign
shards, the summary, and the cluster-launcher config."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # listen on 127.0.0.1 only

import ray

import tests.cluster_faults
from analysis.table import scored_table
from analysis.views import COSTS
from cluster.config import RunConfig
from cluster.driver import FaultInjection, execute, run_eval
from cluster.reduce import reduce_results
from cluster.rows import RESULT_SCHEMA, SCHEMA_VERSION, blank_row, method_params
from cluster.writer import ResultsError, done_unit_ids, read_results
from evals.babilong import compare_answers
from laserkv import MethodConfig, build_method, get_method

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_local() -> Any:
    """A local Ray cluster for this module, bound to loopback, stopped in teardown."""
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(tests.cluster_faults)
    yield
    ray.shutdown()


def config(model_dir: Path, output: Path, methods: tuple[MethodConfig, ...], **changes: Any) -> RunConfig:
    base: dict[str, Any] = dict(
        model=str(model_dir),
        dataset="babilong_demo",
        methods=methods,
        output=str(output),
        lengths=("1k",),
        tasks=("qa1",),
        demo_samples=3,
        workers=2,
        device="cpu",
        dtype="float32",
    )
    return RunConfig(**{**base, **changes})


TWO_METHODS = (get_method("full"), get_method("laser", budget=256, block_size=512, lsh_bits=4))


def rows_by_unit(output: Path) -> list[dict[str, Any]]:
    return read_results(output).to_pylist()


def test_two_workers_two_methods_write_every_row_once(
    ray_local: Any, tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LASERKV_TRITON_SCORES", "0")  # a switch (no effect on CPU): recorded, sent to workers
    output = run_eval(config(tiny_llama_dir, tmp_path, TWO_METHODS))
    rows = rows_by_unit(output)
    assert len(rows) == 6 and len({row["unit_id"] for row in rows}) == 6
    assert Counter(row["method"] for row in rows) == {"full": 3, "laser": 3}
    assert {row["status"] for row in rows} == {"ok"} and {row["sample_id"] for row in rows} == {
        "1k/qa1/0",
        "1k/qa1/1",
        "1k/qa1/2",
    }
    assert len({row["worker"] for row in rows}) == 2, "both workers took units"
    for row in rows:
        assert row["dataset"] == "babilong_demo" and row["task"] == "qa1" and row["length"] == "1k"
        assert row["question"].startswith("Where is") and row["raw_output"] is not None
        assert row["prediction"] is None and row["correct"] is None  # scored when read, not stored
        blocks = row["cache_length_per_block"]
        expected = ("uncompressed", 0) if row["method"] == "full" else ("blocks", len(blocks))
        assert (row["prefill_regime"], row["compression_rounds"]) == expected
        assert row["context_tokens"] > 1000 and row["question_tokens"] > 5 and row["prompt_hash"]
        assert row["seconds_forward"] > 0 and row["seconds_total"] >= row["seconds_forward"]
        assert row["model"] == str(tiny_llama_dir) and row["schema_version"] == SCHEMA_VERSION
        method = get_method(
            row["method"],
            **({} if row["method"] == "full" else dict(budget=256, block_size=512, lsh_bits=4)),
        )
        assert row["method_hash"] == method.config_hash and row["method_kind"] == method.kind
        assert method_params(row) == method.params()
        if row["method"] == "laser":
            params = method_params(row)
            assert row["budget"] == 256 and params["hybrid_ratio"] == 0.75 and params["backend"] == "flash"
            assert (
                row["kept_tokens_final"] < row["context_tokens"] and row["cache_length_per_block"][0] == 256
            )
        else:
            assert row["budget"] is None and row["kept_tokens_final"] == row["context_tokens"]
    manifest = next((output / "manifests").glob("*.json")).read_text()
    assert '"units_planned": 6' in manifest and '"transformers"' in manifest and '"ray"' in manifest
    assert json.loads(manifest)["engine_switches"] == {"LASERKV_TRITON_SCORES": "0"}
    workers = json.loads(manifest)["workers"]  # each starting worker's engine path, from the worker
    assert len(workers) == 2 and len({worker["worker"] for worker in workers}) == 2
    assert all(
        worker["block_kernel"] == "torch-cpu-flash" and worker["fused_modules"] == 0 for worker in workers
    )
    summary = reduce_results(output)
    scored = scored_table([output]).frame
    judged = [compare_answers(target, raw, question, "qa1") for target, raw, question in
              zip(scored["target"], scored["raw_output"], scored["question"], strict=True)]  # fmt: skip
    assert scored["correct"].tolist() == judged
    assert scored["prediction"].tolist() == [raw.strip() for raw in scored["raw_output"]]
    cells = {(cell["method"], cell["task"], cell["length"]): cell for cell in summary["cells"]}
    assert cells[("laser", "qa1", "1k")]["n_paired"] == 3 and cells[("full", "qa1", "1k")]["n"] == 3
    assert (output / "summary.parquet").exists() and (output / "summary.json").exists()
    assert set(summary["official"]["babilong_demo"]) == {"full", "laser"}


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    ray_local: Any, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    killed: list[int] = []
    pools: list[Any] = []

    def kill_one(row: dict[str, Any], pool: Any) -> None:
        if not killed:
            pid = ray.get(pool.actors[0].pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            pools.append(pool)

    run = config(tiny_llama_dir, tmp_path, TWO_METHODS, demo_samples=4)
    output = execute(run, None, FaultInjection(on_row=kill_one))
    rows = rows_by_unit(output)
    assert killed and pools[0].replaced >= 1, "the dead worker was noticed and replaced"
    assert len(rows) == 8 and len({row["unit_id"] for row in rows}) == 8
    assert {row["status"] for row in rows} == {"ok"}
    assert max(row["attempt"] for row in rows) >= 2, "the killed worker's unit ran again"
    manifest = json.loads(next((output / "manifests").glob("*.json")).read_text())
    paths = {worker["worker"]: worker for worker in manifest["workers"]}
    assert len(paths) == len(manifest["workers"]) >= 2
    assert {row["worker"] for row in rows} <= set(paths), "every row's worker has its engine path"
    assert all(path["block_kernel"] == "torch-cpu-flash" for path in paths.values())


def test_a_stopped_driver_resumes_with_only_the_missing_units(
    ray_local: Any, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    class Stop(Exception):
        pass

    def stop_after_three(progress: Any) -> None:
        if progress.done == 3:
            raise Stop

    run = config(tiny_llama_dir, tmp_path / "resumed", TWO_METHODS)
    with pytest.raises(Stop):
        run_eval(run, progress=stop_after_three)
    first = done_unit_ids(tmp_path / "resumed")
    assert len(first) == 3  # flushed on the way out: nothing finished was lost
    seen: list[int] = []
    run_eval(run, progress=lambda progress: seen.append(progress.total))
    assert seen and seen[-1] == 3  # only the 3 missing units ran
    resumed = rows_by_unit(tmp_path / "resumed")
    assert len(resumed) == 6 and len({row["unit_id"] for row in resumed}) == 6
    clean = run_eval(config(tiny_llama_dir, tmp_path / "clean", TWO_METHODS))
    strip = lambda summary: [  # noqa: E731
        {key: value for key, value in cell.items() if key not in COSTS} for cell in summary["cells"]
    ]
    assert strip(reduce_results(tmp_path / "resumed")) == strip(reduce_results(clean))
    shards = sorted((tmp_path / "resumed" / "results").glob("*.parquet"))
    run_eval(run)  # nothing left to do: no new shard
    assert sorted((tmp_path / "resumed" / "results").glob("*.parquet")) == shards
    other_data = config(tiny_llama_dir, tmp_path / "resumed", TWO_METHODS, demo_samples=4)
    with pytest.raises(ResultsError, match=r"another data version .* use another --output, or --overwrite"):
        run_eval(other_data)  # resuming would mix two versions of the demo set
    assert sorted((tmp_path / "resumed" / "results").glob("*.parquet")) == shards


def test_failing_units_become_error_rows_and_the_run_goes_on(
    ray_local: Any, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    methods = (
        get_method("full"),
        build_method(name="oom_probe", budget=256, block_size=512),
        build_method(name="error_probe", budget=128, block_size=512),
    )
    output = execute(
        config(tiny_llama_dir, tmp_path, methods), None, FaultInjection(tests.cluster_faults.FaultyWorker)
    )
    rows = {(row["method"], row["sample_id"]): row for row in rows_by_unit(output)}
    assert len(rows) == 9
    for sample in ("1k/qa1/0", "1k/qa1/1", "1k/qa1/2"):
        assert rows[("full", sample)]["status"] == "ok"
        oom = rows[("oom_probe", sample)]
        assert oom["status"] == "oom" and "out of memory" in oom["error"]
        assert oom["block_size_used"] == 256  # retried once with half the block, then recorded
        assert rows[("error_probe", sample)]["status"] == "error"
        assert rows[("error_probe", sample)]["error"] == "RuntimeError: a bug in the unit"
    summary = reduce_results(output)
    errors = {cell["method"]: cell["errors"] for cell in summary["cells"]}
    assert errors == {"full": 0, "oom_probe": 3, "error_probe": 3}
    # a plain rerun skips the failed units; --retry-failed runs them again (here with a worker
    # that no longer fails) and the summary keeps their ok rows
    run_eval(config(tiny_llama_dir, tmp_path, methods))
    assert len(rows_by_unit(output)) == 9
    run_eval(config(tiny_llama_dir, tmp_path, methods, retry_failed=True))
    assert len(rows_by_unit(output)) == 15
    retried = {cell["method"]: cell["errors"] for cell in reduce_results(output)["cells"]}
    assert retried == {"full": 0, "oom_probe": 0, "error_probe": 0}


def test_a_unit_over_the_timeout_is_a_timeout_row(
    ray_local: Any, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    methods = (get_method("full"), build_method(name="slow_probe", budget=256, block_size=512))
    run = config(tiny_llama_dir, tmp_path, methods, demo_samples=2, timeout=4.0)
    output = execute(run, None, FaultInjection(tests.cluster_faults.FaultyWorker))
    rows = {(row["method"], row["sample_id"]): row for row in rows_by_unit(output)}
    assert len(rows) == 4
    assert {rows[("full", sample)]["status"] for sample in ("1k/qa1/0", "1k/qa1/1")} == {"ok"}
    for sample in ("1k/qa1/0", "1k/qa1/1"):
        assert rows[("slow_probe", sample)]["status"] == "timeout"
        assert "longer than 4.0 s" in rows[("slow_probe", sample)]["error"]


def test_needle_runs_reduce_with_their_own_metric(
    ray_local: Any, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    run = config(tiny_llama_dir, tmp_path, (get_method("full"),), tasks=("niah_single",), demo_samples=2)
    summary = reduce_results(run_eval(run))
    assert summary["official"]["babilong_demo"]["full"]["accuracy"].keys() == {"niah_single/1k"}
    assert [cell["n"] for cell in summary["cells"]] == [2]


def test_failed_units_count_as_wrong_and_pairs_use_both_sides(tmp_path: Path) -> None:
    """Hand-built shard: LongBench v2, 2 samples; full fails on one, laser answers both right."""

    def row(method: str, sample: str, status: str, output: str | None) -> dict[str, Any]:
        values: dict[str, Any] = blank_row()
        values.update(
            unit_id=f"{method}-{sample}", status=status, dataset="longbench_v2", dataset_revision="r",
            sample_id=sample, task="Single-Document QA", length="short", question="Q?",
            breakdown='{"difficulty": "easy"}',
            target="B", method=method, method_hash=method, model="m", temperature=0.1, max_new_tokens=128,
            seed=0, raw_output=output,
        )  # fmt: skip
        return values

    rows = [
        row("full", "a", "ok", "The correct answer is (B)"),
        row("full", "b", "oom", None),
        row("laser", "a", "ok", "The correct answer is (B)"),
        row("laser", "b", "ok", "The correct answer is (B)"),
        row("laser", "c", "ok", ""),  # a real empty output: skipped, as pred.py does
    ]
    (tmp_path / "results").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), tmp_path / "results" / "part-x-00000.parquet"
    )
    summary = reduce_results(tmp_path)
    cells = {cell["method"]: cell for cell in summary["cells"]}
    assert (cells["full"]["accuracy"], cells["full"]["errors"]) == (
        50.0,
        1,
    )  # the failure is wrong, not skipped
    assert (cells["laser"]["accuracy"], cells["laser"]["n_scored"]) == (100.0, 2)
    assert cells["laser"]["delta_vs_full"] == 50.0 and cells["laser"]["n_paired"] == 2
    assert summary["official"]["longbench_v2"]["laser"]["skipped_empty"] == 1


def test_foreign_or_corrupt_shards_are_named(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "part-x-00000.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ResultsError, match=r"part-x-00000.parquet is not a readable Parquet file"):
        done_unit_ids(tmp_path)
    (results / "part-x-00000.parquet").unlink()
    pq.write_table(pa.table({"id": [1, 2], "score": [0.5, 0.7]}), results / "other.parquet")
    with pytest.raises(ResultsError, match=r"other.parquet is not a laserkv result shard \(it lacks unit_id"):
        read_results(tmp_path)
    (results / "other.parquet").unlink()
    with pytest.raises(ResultsError, match="holds no result shards"):
        reduce_results(tmp_path)
    pq.write_table(RESULT_SCHEMA.empty_table(), results / "part-empty-00000.parquet")
    assert done_unit_ids(tmp_path) == set()


def test_bad_run_configs_are_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dataset='squad' is not allowed"):
        config(tiny_llama_dir, tmp_path, TWO_METHODS, dataset="squad")
    with pytest.raises(ValueError, match="distinct configs"):
        config(tiny_llama_dir, tmp_path, (get_method("laser"), get_method("hybrid_magicpig_0.75")))
    with pytest.raises(ValueError, match="length='256k' is not in babilong_demo"):
        config(tiny_llama_dir, tmp_path, TWO_METHODS, lengths=("256k",))
    with pytest.raises(ValueError, match="workers_per_gpu=0 is not allowed"):
        config(tiny_llama_dir, tmp_path, TWO_METHODS, gpus=1, workers_per_gpu=0)
    assert config(tiny_llama_dir, tmp_path, TWO_METHODS, gpus=2, workers_per_gpu=4).n_workers == 8
    assert config(tiny_llama_dir, tmp_path, TWO_METHODS, workers=3, workers_per_gpu=4).n_workers == 3


def test_demo_samples_are_counted_by_the_model_tokenizer_and_cells_interleave(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    from cluster.samples import dataset_revision, load_samples
    from laserkv.modeling import load_tokenizer

    run = config(tiny_llama_dir, tmp_path, TWO_METHODS, lengths=("1k", "2k"), tasks=("qa1", "qa3"), limit=2)
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    samples = load_samples(run, tokenizer)
    assert [sample.sample_id for sample in samples] == [
        "1k/qa1/0", "1k/qa3/0", "2k/qa1/0", "2k/qa3/0", "1k/qa1/1", "1k/qa3/1", "2k/qa1/1", "2k/qa3/1",
    ]  # fmt: skip
    for sample in samples:
        document = sample.parts.context.split("<context>\n", 1)[1]  # and the closing tag
        nominal = 1000 if sample.length == "1k" else 2000
        assert (
            nominal <= len(tokenizer.encode(document, add_special_tokens=False)) <= nominal * 1.5
        )  # + a sentence
    other_model = config(tmp_path, tmp_path, TWO_METHODS)
    assert dataset_revision(run) != dataset_revision(other_model)
    with pytest.raises(ValueError, match="counts tokens with the run model's tokenizer"):
        load_samples(run, None)


def test_cluster_launcher_config_passes_rays_validator() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    prepared = prepare_config(raw)
    validate_config(prepared)
    node_types = prepared["available_node_types"]
    assert (
        node_types["head_cpu"]["resources"]["GPU"] == 0 and node_types["gpu_worker"]["resources"]["GPU"] == 8
    )
    assert prepared["head_node_type"] == "head_cpu"
    assert any("pip install -e ." in command for command in prepared["setup_commands"])


def test_the_dispatcher_refuses_a_unit_id_twice(ray_local: Any, tiny_llama_dir: Path, tmp_path: Path) -> None:
    """Bookkeeping errors are errors: a plan with one id twice, or a second row for a written id."""
    from cluster.dispatcher import BookkeepingError, Dispatcher
    from cluster.plan import plan_units
    from cluster.pool import WorkerPool
    from cluster.samples import load_samples
    from laserkv.modeling import load_tokenizer

    run = config(tiny_llama_dir, tmp_path, (get_method("full"),), workers=1, demo_samples=1)
    units = plan_units(load_samples(run, load_tokenizer(run.model)), run.methods, run.model, "r")
    pool = WorkerPool(run, tests.cluster_faults.FaultyWorker, "run")
    try:
        with pytest.raises(BookkeepingError, match="the plan holds a unit id twice"):
            Dispatcher(run, pool, [units[0], units[0]], lambda row: None, "run")
        written: list[dict[str, Any]] = []
        dispatcher = Dispatcher(run, pool, units, written.append, "run")
        dispatcher.run()
        assert [row["unit_id"] for row in written] == [units[0].unit_id]
        with pytest.raises(BookkeepingError, match="came back twice"):
            dispatcher.write(written[0])
    finally:
        pool.shutdown()
