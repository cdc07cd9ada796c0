"""`horq bench kernels` end to end on tiny shapes: tables printed, JSON and the doc section written."""

import json

import pytest

from horq.apps import bench_kernels as bench
from horq.apps.cli import main


@pytest.fixture
def tiny_bench(monkeypatch):
    monkeypatch.setattr(bench, "BGEMM_SIZES", [(8, 128, 6)])
    monkeypatch.setattr(bench, "CONV_SHAPES", {"S1": (8, 6)})
    monkeypatch.setattr(bench, "THREADS", (1,))


def test_bench_kernels_cli_writes_json_and_doc(tiny_bench, tmp_path, capsys):
    doc = tmp_path / "K.md"
    doc.write_text("intro\n<!-- bench:begin -->\nold table\n<!-- bench:end -->\nafter\n")
    out = tmp_path / "k.json"
    assert main(["bench", "kernels", "--quick", "--json", str(out), "--doc", str(doc)]) == 0
    printed = capsys.readouterr().out
    assert "### bgemm" in printed and "S1 8ch 6x6" in printed
    result = json.loads(out.read_text())
    assert {r["path"] for r in result["bgemm"]} == set(result["available"])
    assert all(r["gmacs"] > 0 for r in result["bgemm"]) and len(result["conv"]) == 1
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old table" not in text
    assert "S1 8ch 6x6" in text


def test_bench_kernels_doc_without_markers(tiny_bench, tmp_path, capsys):
    doc = tmp_path / "K.md"
    doc.write_text("no markers here\n")
    assert main(["bench", "kernels", "--quick", "--skip-bgemm", "--doc", str(doc)]) == 2
    assert "no <!-- bench:begin -->" in capsys.readouterr().err
    assert doc.read_text() == "no markers here\n"
