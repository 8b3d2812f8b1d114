"""Rewrite the method table of docs/methods.md (between the methods markers) from the method registry.

The block is the registry's listing (``laserkv.methods.method_listing``, every column of
``LISTING_COLUMNS``) in two parts, so that no line is over 120 characters: a table with one row
per method (name, protocol, mode, default budget, config hash), then one list item per method
(what it is, its selector, its budget split, its source). ``tests/test_methods.py`` fails when the page
is stale. (The file keeps its old name: CI and the docs call it by it.)
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from laserkv.methods import LISTING_COLUMNS, method_listing

PAGE = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
BLOCK = re.compile(r"(<!-- methods:start -->\n).*?(<!-- methods:end -->)", re.S)
WIDTH = 120
TABLE_COLUMNS = ("method", "protocol", "mode", "default budget", "config hash")


def methods_block() -> str:
    """The registry as the page shows it: the short table, then one wrapped item per method."""
    rows = [dict(zip(LISTING_COLUMNS, row, strict=True)) for row in method_listing()]
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for row in rows:
        cells = [f"`{row['method']}`", *(row[column] for column in TABLE_COLUMNS[1:4])]
        lines.append("| " + " | ".join([*cells, f"`{row['config hash']}`"]) + " |")
    lines.append("")
    for row in rows:
        item = (
            f"- `{row['method']}`: {row['what it is']}. Selector: {row['selector']}; budget split:"
            f" {row['budget split']}; source: {row['source']}."
        )
        lines.extend(
            textwrap.wrap(item, WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    text = PAGE.read_text()
    if not BLOCK.search(text):
        raise SystemExit(f"{PAGE} has no '<!-- methods:start -->' ... '<!-- methods:end -->' block")
    PAGE.write_text(BLOCK.sub(lambda match: match.group(1) + methods_block() + match.group(2), text))


if __name__ == "__main__":
    main()
