"""Quality v3's coverage, as its plan allows before the analysis (docs/quality/v3-plan.md, "Stopping
and missing data"): units done, failed and missing per configuration and task, and whether each
planned comparison is matched in prefill regime and realised kept tokens on the samples both arms
ran. It reads only those columns of the result shards (never a raw output, prediction or score)
and prints nothing an outcome could be read from.

    python -m benchmarks.quality_v3_coverage docs/quality/runs/q15_v3
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.views import KEPT_TOLERANCE
from cluster.writer import shard_paths
from evals.ruler import task_names

COVERAGE_COLUMNS = (
    "unit_id", "status", "method", "task", "length", "sample_id", "kept_tokens_final",
    "prefill_regime", "compression_rounds",
)  # fmt: skip
"""Everything this script reads: identity, status and the regime and kept-token fields."""
SAMPLES_PER_TASK = 50


@dataclass(frozen=True)
class Planned:
    """One planned comparison: the plan's id, the LASER-KV arm's and the rival's labels."""

    id: str
    arm: str
    rival: str


def _exact(ratio: str, block: str = "") -> str:
    prefix = f"block_size={block}," if block else ""
    return f"laser[{prefix}budget_rule=exact,compression_ratio={ratio}]"


def _rival(name: str, ratio: str, block: str = "") -> str:
    prefix = f"block_size={block}," if block else ""
    return f"{name}[{prefix}compression_ratio={ratio}]"


ONE_SHOT = "131072"
EXPECTED_ATTENTION = "kvpress:expected_attention_query_aware"
AS_SHIPPED = "laser[compression_ratio=0.25,faithful_empty_block=True,faithful_hybrid=True,score_norm=window]"
PLANNED = (
    Planned("P-a", _exact("0.25"), _rival("snapkv", "0.25")),
    Planned("P-b1", _exact("0.25", ONE_SHOT), _rival("kvpress:snapkv_query_aware", "0.25")),
    Planned("P-b2", _exact("0.25", ONE_SHOT), _rival(EXPECTED_ATTENTION, "0.25")),
    Planned("S1 (P-a)", _exact("0.125"), _rival("snapkv", "0.125")),
    Planned("S1 (P-b1)", _exact("0.125", ONE_SHOT), _rival("kvpress:snapkv_query_aware", "0.125")),
    Planned("S1 (P-b2)", _exact("0.125", ONE_SHOT), _rival(EXPECTED_ATTENTION, "0.125")),
    Planned("S6 (1,024)", _exact("0.25", "1024"), _rival("snapkv", "0.25", "1024")),
    Planned("S6 (one-shot)", _exact("0.25", ONE_SHOT), _rival("snapkv", "0.25", ONE_SHOT)),
    Planned("S7", AS_SHIPPED, "laser[compression_ratio=0.25]"),
    Planned("S10 (0.5)", _exact("0.5"), _rival("snapkv", "0.5")),
    Planned("S10 (0.0625)", _exact("0.0625"), _rival("snapkv", "0.0625")),
)  # fmt: skip
"""The plan's comparisons whose matching can be checked from the rows (the primary family first)."""
PRIMARY_ARMS = tuple(dict.fromkeys(label for item in PLANNED[:3] for label in (item.arm, item.rival)))


def read_coverage(directory: Path) -> pd.DataFrame:
    """The coverage columns of every shard, one row per unit (its ``ok`` row if any)."""
    tables = [pq.read_table(path, columns=list(COVERAGE_COLUMNS)) for path in shard_paths(directory)]
    frame = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=list(COVERAGE_COLUMNS))
    frame = frame.assign(_ok=frame["status"].eq("ok")).sort_values("_ok", kind="stable")
    return frame.drop_duplicates(["unit_id", "method"], keep="last").drop(columns="_ok")


def per_config(frame: pd.DataFrame, length: str, tasks: Sequence[str]) -> pd.DataFrame:
    """Per configuration at ``length``: units ok, failed, missing (of tasks x 50) and the fewest
    samples any task has."""
    cells = frame[frame["length"].eq(length)]
    records = []
    for method, rows in cells.groupby("method"):
        per_task = rows.groupby("task")["sample_id"].nunique().reindex(list(tasks), fill_value=0)
        done = int(per_task.sum())
        records.append(
            {
                "configuration": method,
                "ok": int(rows["status"].eq("ok").sum()),
                "failed": int(rows["status"].ne("ok").sum()),
                "missing": SAMPLES_PER_TASK * len(tasks) - done,
                "fewest per task": int(per_task.min()),
            }
        )
    return pd.DataFrame.from_records(records)


def primary_missing(configs: pd.DataFrame, tasks: Sequence[str]) -> int:
    """Units the primary cells (the five configurations of P-a, P-b1 and P-b2) still miss, from
    ``per_config``."""
    primary = configs[configs["configuration"].isin(PRIMARY_ARMS)]
    return int(primary["missing"].sum()) + SAMPLES_PER_TASK * len(tasks) * (len(PRIMARY_ARMS) - len(primary))


def matching(frame: pd.DataFrame, length: str) -> pd.DataFrame:
    """Per planned comparison, over the samples both arms ran ``ok``: their regimes and rounds,
    mean kept tokens, the largest per-sample difference and whether the 2% rule holds."""
    ok = frame[frame["status"].eq("ok") & frame["length"].eq(length)]
    records = []
    for item in PLANNED:
        arm, rival = (
            ok[ok["method"].eq(label)].set_index(["task", "sample_id"]) for label in (item.arm, item.rival)
        )
        shared = arm.index.intersection(rival.index)
        record: dict[str, object] = {"id": item.id, "pairs": len(shared)}
        if len(shared):
            a, r = arm.loc[shared, "kept_tokens_final"], rival.loc[shared, "kept_tokens_final"]
            gap = (a - r).abs()
            relative = abs(a.mean() / r.mean() - 1)
            record.update(
                {
                    "regime (arm / rival)": f"{_regimes(arm.loc[shared])} / {_regimes(rival.loc[shared])}",
                    "kept (arm / rival)": f"{a.mean():.1f} / {r.mean():.1f}",
                    "largest gap": int(gap.max()),
                    "matched kept (2%)": "yes"
                    if relative <= KEPT_TOLERANCE
                    else f"no ({100 * relative:.1f}%)",
                }
            )
        records.append(record)
    return pd.DataFrame.from_records(records)


def _regimes(rows: pd.DataFrame) -> str:
    """The rows' regimes with their rounds, e.g. ``blocks x4`` or ``one-shot x1``."""
    found = sorted(
        {
            f"{regime} x{rounds}"
            for regime, rounds in zip(rows["prefill_regime"], rows["compression_rounds"], strict=True)
        }
    )
    return ", ".join(found)


def markdown(frame: pd.DataFrame) -> str:
    """A frame as a Markdown table."""
    header = "| " + " | ".join(str(column) for column in frame.columns) + " |"
    lines = [header, "|" + "---|" * len(frame.columns)]
    lines += [
        "| " + " | ".join("-" if pd.isna(value) else str(value) for value in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--length", default="16k")
    args = parser.parse_args()
    tasks = task_names()
    frame = read_coverage(args.directory)
    configs = per_config(frame, args.length, tasks)
    print(f"# {args.directory}, {args.length}: {len(frame)} units read (coverage columns only)\n")
    print(markdown(configs.sort_values("configuration")))
    missing = primary_missing(configs, tasks)
    state = "complete" if missing == 0 else f"not complete, {missing} units missing"
    print(f"\nPrimary cells (the five configurations of P-a, P-b1, P-b2; 13 tasks x 50): {state}.\n")
    print(markdown(matching(frame, args.length)))


if __name__ == "__main__":
    main()
