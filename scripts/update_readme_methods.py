"""Rewrite the README's method table (between the methods markers) from the method registry."""

from __future__ import annotations

import re
from pathlib import Path

from laserkv.methods import methods_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- methods:start -->\n).*?(<!-- methods:end -->)", re.S)


def main() -> None:
    text = README.read_text()
    if not BLOCK.search(text):
        raise SystemExit(f"{README} has no '<!-- methods:start -->' ... '<!-- methods:end -->' block")
    README.write_text(BLOCK.sub(lambda match: match.group(1) + methods_markdown() + match.group(2), text))


if __name__ == "__main__":
    main()
