import argparse
import subprocess
import sys
import textwrap

import pytest

import horq.apps.cli
from horq.apps import data_cli


def run_data(argv):
    parser = argparse.ArgumentParser(prog="horq")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_info_lists_every_dataset(make_idx, capsys):
    root, _ = make_idx("mnist")
    assert run_data(["data", "info", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"present in {root / 'mnist'}" in out
    assert f"missing: horq data fetch fashion-mnist --dest {root}" in out
    for name in ("cifar10", "mnist-5k", "digits"):
        assert name in out


def test_horq_main_runs_data_info(tmp_path, monkeypatch, capsys):
    # Only this package's command, so the test does not depend on (or import torch through) the others.
    monkeypatch.setattr(horq.apps.cli, "COMMAND_MODULES", ("horq.apps.data_cli",))
    monkeypatch.setenv("HORQ_DATA", str(tmp_path))
    assert horq.apps.cli.main(["data", "info"]) == 0
    assert f"data root: {tmp_path}" in capsys.readouterr().out


def test_fetch_of_bundled_dataset_is_rejected_by_parser():
    with pytest.raises(SystemExit):
        run_data(["data", "fetch", "digits"])


BLOCK_TORCH = textwrap.dedent(
    """
    import sys

    attempts = []

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                attempts.append(name)
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    """
)


def test_horq_data_never_imports_torch():
    code = BLOCK_TORCH + textwrap.dedent(
        """
        import horq.data, horq.apps.data_cli, horq.data.download, horq.data.cifar, horq.data.idx
        assert attempts == [], attempts
        ds = horq.data.load("mnist-5k", "test", limit=3)
        assert ds.x.shape == (3, 1, 28, 28)
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_blocker_really_blocks():
    # The check above is only meaningful if the finder stops a torch import.
    code = BLOCK_TORCH + "\ntry:\n    import torch\nexcept ImportError:\n    print('blocked')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "blocked", proc.stderr
