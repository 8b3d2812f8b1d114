"""Benchmarks with their official protocols and the offline demo set.

- ``longbench_v2``: THUDM/LongBench-v2, 0-shot prompt, middle truncation, extraction, result.py's table;
- ``babilong``: RMT-team/babilong (+ 1k-samples), DEFAULT_PROMPTS, compare_answers, qa1-qa5 headline;
- ``demo_set``: seeded BABILong-format samples in real haystack text, no hub needed;
- ``chat``: a sample's official message through a chat template, whole or cut for the engine;
- ``stats``: bootstrap CIs, paired bootstrap and McNemar against a baseline.

Imports neither torch nor ``laserkv``; the engine imports nothing from here.
"""
