"""Assembles docs/RESULTS.md from experiments/RESULTS.src.md and the generated tables (not a test).

    .venv/bin/python experiments/build_results.py

A line ``<!-- include: PATH -->`` in the source is replaced by the file at PATH (relative to the repository
root), so every table in docs/RESULTS.md is exactly what the command named beside it wrote; a line
``<!-- include: PATH lines=A-B -->`` takes only those lines (1-based, inclusive) of it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = re.compile(r"^<!-- include: (\S+)(?: lines=(\d+)-(\d+))? -->$")


def build(src: Path) -> str:
    out = []
    for line in src.read_text().splitlines():
        m = INCLUDE.match(line.strip())
        if not m:
            out.append(line)
            continue
        text = (ROOT / m.group(1)).read_text().rstrip("\n").splitlines()
        if m.group(2):
            text = text[int(m.group(2)) - 1:int(m.group(3))]
        out.extend(text)
    return "\n".join(out) + "\n"


def main() -> int:
    (ROOT / "docs" / "RESULTS.md").write_text(build(ROOT / "experiments" / "RESULTS.src.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
