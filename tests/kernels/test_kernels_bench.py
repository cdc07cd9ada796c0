"""`horq bench kernels` end to end on tiny shapes: tables printed, JSON and the doc section written."""

import json
from pathlib import Path

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


def test_bench_kernels_named_section(tiny_bench, tmp_path, capsys):
    # --section: the tables go between that name's markers; the default section is left as it is
    doc = tmp_path / "K.md"
    doc.write_text("<!-- bench:begin -->\nother machine\n<!-- bench:end -->\n"
                   "<!-- bench-avx512:begin -->\nold\n<!-- bench-avx512:end -->\n")
    assert main(["bench", "kernels", "--quick", "--skip-bgemm", "--doc", str(doc), "--section", "bench-avx512"]) == 0
    text = doc.read_text()
    assert "other machine" in text and "\nold\n" not in text
    assert text.index("S1 8ch 6x6") > text.index("<!-- bench-avx512:begin -->")


@pytest.mark.parametrize("name", ["", "1bench", "bench--x", "bench x", "bench-", "a>b"])
def test_bench_kernels_refuses_bad_section_names(name, capsys):
    # a marker is an HTML comment: no "--" inside, no spaces or markup
    with pytest.raises(SystemExit) as exc:
        main(["bench", "kernels", "--quick", "--section", name])
    assert exc.value.code == 2
    assert "--section" in capsys.readouterr().err


def test_bench_kernels_times_horq_alone(tiny_bench, monkeypatch, capsys):
    # HORQ's orders are timed again without PyTorch between, and the 2-thread row says its speedup over 1 thread
    monkeypatch.setattr(bench, "THREADS", (1, 2))
    result = bench.run(quick=True, skip_bgemm=True)
    rows = {r["threads"]: r for r in result["conv"]}
    assert all(rows[t][f"alone{o}"] > 0 for t in (1, 2) for o in bench.ORDERS)
    table = bench.markdown(result)
    assert "HORQ alone" in table
    two = next(line for line in table.splitlines() if line.startswith("| S1 8ch 6x6 | 2 |") and "x (" in line)
    want = rows[1]["alone1"] / rows[2]["alone1"]
    assert f"| {want:.2f}x (" in two


@pytest.mark.parametrize("json_name, section", [("kernels_bench.json", "bench"),
                                                ("kernels_bench_avx512.json", "bench-avx512")])
def test_committed_sections_are_their_json_rendered(json_name, section):
    # docs/KERNELS.md's generated sections are what the benchmark writes for the committed JSON (no hand edits)
    root = Path(__file__).resolve().parents[2]
    result = json.loads((root / "docs" / json_name).read_text())
    doc = (root / "docs" / "KERNELS.md").read_text()
    body = doc.split(f"<!-- {section}:begin -->\n", 1)[1].split(f"\n<!-- {section}:end -->", 1)[0]
    assert body == bench.markdown(result)
