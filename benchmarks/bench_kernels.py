"""The repository's kernel benchmark run: `horq bench kernels` writing its JSON and its generated section of
docs/KERNELS.md, one pair per kind of machine so that each keeps its record: on a CPU whose best kernel path is avx512,
docs/kernels_bench_avx512.json and the section `bench-avx512`; on any other, docs/kernels_bench.json and the section
`bench` (pass --quick for a short run that writes nothing).

    .venv/bin/python benchmarks/bench_kernels.py [--quick] [--skip-bgemm]
"""

from __future__ import annotations

import sys
from pathlib import Path

from horq import kernels
from horq.apps.cli import main

ROOT = Path(__file__).resolve().parents[1]


def outputs(best_path: str) -> tuple[Path, str]:
    """The JSON file and the doc section of a machine whose best kernel path is `best_path`."""
    if best_path == "avx512":
        return ROOT / "docs" / "kernels_bench_avx512.json", "bench-avx512"
    return ROOT / "docs" / "kernels_bench.json", "bench"


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--quick" not in args:
        json_path, section = outputs(kernels.info()["available"][0])
        args += ["--json", str(json_path), "--doc", str(ROOT / "docs" / "KERNELS.md"), "--section", section]
    sys.exit(main(["bench", "kernels", *args]))
