"""The repository's kernel benchmark run: `horq bench kernels` writing docs/kernels_bench.json and the
generated section of docs/KERNELS.md (pass --quick for a short run that writes nothing).

    .venv/bin/python benchmarks/bench_kernels.py [--quick] [--skip-bgemm]
"""

from __future__ import annotations

import sys
from pathlib import Path

from horq.apps.cli import main

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--quick" not in args:
        args += ["--json", str(ROOT / "docs" / "kernels_bench.json"), "--doc", str(ROOT / "docs" / "KERNELS.md")]
    sys.exit(main(["bench", "kernels", *args]))
