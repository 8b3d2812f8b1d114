"""Published full-cache numbers a run of the same model should land near (shared/spec/evals.md
section 3): LongBench v2 leaderboard (w/o CoT) and the BABILong README heatmap (qa1-qa5 mean)."""

from __future__ import annotations

PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "Llama-3.1-8B-Instruct": {
        "longbench_v2": {
            "overall": 30.0,
            "easy": 30.7,
            "hard": 29.6,
            "short": 35.0,
            "medium": 27.9,
            "long": 25.9,
        },
        "babilong": {
            "0k": 67,
            "1k": 68,
            "2k": 66,
            "4k": 66,
            "8k": 62,
            "16k": 60,
            "32k": 56,
            "64k": 49,
            "128k": 39,
        },
    },
    "Qwen2.5-7B-Instruct": {
        "longbench_v2": {
            "overall": 30.0,
            "easy": 30.7,
            "hard": 29.6,
            "short": 40.6,
            "medium": 24.2,
            "long": 24.1,
        },
        "babilong": {
            "0k": 68,
            "1k": 68,
            "2k": 68,
            "4k": 66,
            "8k": 65,
            "16k": 63,
            "32k": 60,
            "64k": 55,
            "128k": 45,
        },
    },
}


def published_for(model: str) -> tuple[str, dict[str, dict[str, float]]] | None:
    """The published numbers whose model name appears in ``model`` (case-insensitive), if any."""
    for name, numbers in PUBLISHED.items():
        if name.lower() in model.lower():
            return name, numbers
    return None
