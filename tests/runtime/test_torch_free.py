"""horq.format and horq.runtime never import torch: import and run them with torch blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test (import of {name!r})")
            return None

    sys.meta_path.insert(0, BlockTorch())
    sys.path.insert(0, sys.argv[2])
    import numpy as np
    import horq, horq.format, horq.runtime, horq.runtime.ops, horq.runtime.native, horq.apps.summary
    from horq_files import tiny_model

    path = sys.argv[1]
    horq.format.save(path, *tiny_model())
    for backend in ("auto", "numpy", "reference"):
        model = horq.runtime.load(path, backend=backend)
        y = model(np.zeros((2, 2, 6, 6), np.float32))
        assert y.shape == (2, 2), y.shape
    horq.apps.summary.summarize(path)
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker failed")
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
    print("ok", model.backend)
    """
)


def test_format_and_runtime_run_without_torch(tmp_path):
    helpers = Path(__file__).resolve().parent.parent / "format"
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "t.horq"), str(helpers)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")
