"""The `horq` commands that deploy a packed model run where PyTorch is not installed: each runs in a subprocess
whose import system answers every ``torch`` import like a missing package. `run`, `summary`, `bench FILE.horq`,
`data`, `info`, `--help` and `--version` never even try to import torch; the commands that need it say so in one line.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

# Runs `horq ARGV...` with torch missing; the last stderr line lists the torch imports that were attempted.
WRAPPER = textwrap.dedent(
    """
    import importlib.abc, sys

    attempts = []

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)  # as if not installed
            return None

    sys.meta_path.insert(0, NoTorch())
    from horq.apps.cli import main

    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code
    assert "torch" not in sys.modules
    print(f"TORCH_ATTEMPTS={sorted(set(attempts))}", file=sys.stderr)
    sys.exit(code)
    """
)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """An (untrained) digits-shaped model exported with torch in this process; the CLI runs it without."""
    import horq
    from horq.nn import HORQConfig, build_model, convert_

    root = tmp_path_factory.mktemp("torch_free")
    model = build_model("mnist-mlp", in_shape=(1, 8, 8), num_classes=10, hidden=16)
    convert_(model, HORQConfig(order=2))
    horq.export(model.eval(), root / "m.horq")
    np.save(root / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    (root / "ckpt.pt").write_bytes(b"PK\x03\x04" + b"\0" * 60)  # what a torch.save file starts with
    return root


def horq_without_torch(*argv) -> tuple[int, str, str, list]:
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, argv)], capture_output=True, text=True,
                          timeout=120)
    err_lines = proc.stderr.strip().splitlines()
    assert err_lines and err_lines[-1].startswith("TORCH_ATTEMPTS="), proc.stderr
    attempts = eval(err_lines[-1].split("=", 1)[1])
    return proc.returncode, proc.stdout, "\n".join(err_lines[:-1]), attempts


def test_the_wrapper_blocks_torch():
    code = WRAPPER.split("from horq.apps.cli import main")[0] + "import torch\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "ModuleNotFoundError: No module named 'torch'" in proc.stderr


@pytest.mark.parametrize("argv, expected", [
    (["--help"], "COMMAND"),
    (["--version"], "horq 0."),
    (["train", "--help"], "--overwrite"),
    (["run", "{root}/m.horq", "--input", "{root}/x.npy", "-o", "{root}/y.npy"], ""),
    (["run", "{root}/m.horq", "--data", "digits", "--limit", "20"], "digits/test: accuracy"),
    (["summary", "{root}/m.horq"], "cost-model speedup"),
    (["bench", "{root}/m.horq", "--batch", "1", "--threads", "1", "--repeats", "1", "--warmup", "0"],
     "PyTorch is not installed here"),
    (["data", "info"], "digits"),
    (["info"], "kernel path in use"),
])
def test_command_works_without_torch(packed, argv, expected):
    code, out, err, attempts = horq_without_torch(*(a.format(root=packed) for a in argv))
    assert code == 0, err
    assert expected in out
    # bench looks for PyTorch to time it beside the runtime, and does without; the others never look.
    assert attempts == ([] if argv[0] != "bench" else ["torch"]), f"the command tried to import {attempts}"


def test_run_output_and_bench_table_without_torch(packed):
    code, out, err, _ = horq_without_torch("run", packed / "m.horq", "--input", packed / "x.npy",
                                           "-o", packed / "y.npy")
    assert code == 0 and np.load(packed / "y.npy").shape == (2, 10)
    code, out, err, _ = horq_without_torch("bench", packed / "m.horq", "--batch", "2", "--threads", "1",
                                           "--repeats", "1", "--warmup", "0", "--backend", "numpy")
    row = out.splitlines()[1].split()
    assert code == 0 and row[:2] == ["2", "1"] and row[3] == "-" and row[-1] == "numpy"  # no PyTorch column


@pytest.mark.parametrize("argv", [
    ["train", "--data", "digits", "--out", "{root}/run"],
    ["eval", "{root}/ckpt.pt"],
    ["export", "{root}/ckpt.pt", "-o", "{root}/out.horq"],
    ["summary", "{root}/ckpt.pt"],
])
def test_commands_needing_torch_say_so(packed, argv):
    code, out, err, attempts = horq_without_torch(*(a.format(root=packed) for a in argv))
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 0 and "needs PyTorch, which is not installed" in err, err
    assert attempts  # it did need torch
