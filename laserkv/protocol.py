"""The two protocols a compression method runs under (torch-free: result rows name them too).

- ``query-aware``: the question's rows may score the context (LASER-KV, published SnapKV, ...);
- ``query-agnostic``: the context is compressed without seeing the question (StreamingLLM, H2O,
  kvpress's default of compressing the context alone, ...).
"""

QUERY_AWARE = "query-aware"
QUERY_AGNOSTIC = "query-agnostic"
PROTOCOLS = (QUERY_AWARE, QUERY_AGNOSTIC)
