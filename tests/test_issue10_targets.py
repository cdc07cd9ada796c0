"""benchmarks/issue10_targets.py: the verdicts flip at each target's bound, missing measurements say so, and the
tables in docs/KERNELS.md are what it prints for the committed yardstick files (so the doc's status cannot drift
from its data)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(name):
    """benchmarks/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc_section(section):
    """The generated part of docs/KERNELS.md between <!-- section:begin --> and <!-- section:end -->."""
    doc = (ROOT / "docs" / "KERNELS.md").read_text()
    return doc.split(f"<!-- {section}:begin -->\n", 1)[1].split(f"\n<!-- {section}:end -->", 1)[0]


targets = _benchmark("issue10_targets")


def _t(ms):
    return {"median": ms / 1e3, "best": ms / 1e3}


def _layers(path="avx2", ov=3.0, o2=2.0, o1=0.4):
    rows = []
    for shape, k in (("r18-64ch-56", 3), ("1x1-256ch-28", 1), ("5x5-odd", 5)):
        times = {"horq1": _t(o1), "horq2": _t(o1 * o2), "ov_binary": _t(o1 * ov)}
        rows.append({"shape": shape, "k": k, "macs": 115.6e6, "times": times, "warm": times})
    return {"kernel_path": path, "cpu": "test", "date": "d", "rows": rows}


def _models(path="avx2", speedup=8.0, two=1.8, non_binary=0.1, twin=2.0, plain=1.8):
    rows, profiles = [], {}
    for model in ("resnet18-224", "resnet18-32", "cifar-vgg"):
        for threads, scale in ((1, 1.0), (2, 1.0 / two)):
            h = {f"horq{o}": _t(scale) for o in (1, 2)}  # both orders 1 ms at 1 thread: every ratio is `speedup`
            times = {**h, "torch_fp32": _t(speedup), "ov_fp32": _t(speedup), "ov_binary": _t(twin * scale),
                     "ov_binary_plain": _t(plain * scale)}
            rows.append({"model": model, "threads": threads, "times": times, "warm": times, "horq_alone": h})
        profiles[model] = {"o1": {"steps_ms": 1.0, "by_op": {"binary_conv2d": {"ms": 1.0 - non_binary}}}}
    return {"kernel_path": path, "date": "d", "rows": rows, "profiles": profiles}


def _verdicts(rows):
    return {target.split(" (")[0]: verdict for target, _, verdict in rows}


def test_layer_verdicts_flip_at_the_bounds():
    ok = _verdicts(targets.layer_targets(_layers(ov=1.51, o2=2.19, o1=0.4), None))
    assert set(ok.values()) == {"met"}  # 115.6 M MACs in 0.4 ms: 0.29 T >= 0.25
    bad = _verdicts(targets.layer_targets(_layers(ov=1.49, o2=2.21, o1=0.5), None))
    assert all(v.startswith("not met") for v in bad.values())  # 0.23 T
    # the 5x5 row is outside the targets: a bad ratio there changes nothing
    layers = _layers(ov=2.0, o2=2.0)
    layers["rows"][2]["times"]["horq2"] = _t(10.0)
    assert set(_verdicts(targets.layer_targets(layers, None)).values()) == {"met"}


def test_throughput_bound_follows_the_kernel_path():
    rows = targets.layer_targets(_layers(path="avx512", o1=0.4), None)
    assert any("0.6 T" in t and v.startswith("not met") for t, _, v in rows)


def test_model_verdicts():
    assert all(v == "met" for _, _, v in targets.model_targets(_models(speedup=10.5, two=1.8, non_binary=0.1)))
    rows = targets.model_targets(_models(path="avx512", speedup=2.9, two=1.6, non_binary=0.2, twin=1.6, plain=1.49))
    verdicts = [v for _, _, v in rows]
    # 7 ratio targets, OpenVINO's binary twins, 2 thread targets, 2 non-binary shares
    assert "met" not in verdicts and len(rows) == 12


def test_openvino_twin_row_takes_the_lesser_twin():
    for twin, plain, verdict in ((1.6, 1.51, "met"), (1.6, 1.49, "not met (3 of 3)"), (1.49, 1.6, "not met (3 of 3)")):
        row = [r for r in targets.model_targets(_models(twin=twin, plain=plain)) if "binary twin" in r[0]]
        assert len(row) == 1 and row[0][2] == verdict, (twin, plain, row)
    models = _models()
    for r in models["rows"]:
        del r["times"]["ov_binary"]
    row = [r for r in targets.model_targets(models) if "binary twin" in r[0]]
    assert row[0][2] == "not measured" and row[0][1].startswith("n/a")


def test_missing_measurements_are_not_met_silently():
    layers = _layers()
    for r in layers["rows"]:
        del r["times"]["ov_binary"]
    rows = targets.layer_targets(layers, None)
    assert rows[0][2] == "not measured" and rows[0][1].startswith("n/a")
    models = _models(path="avx512")
    for r in models["rows"]:
        del r["times"]["ov_fp32"]
    assert sum(v == "not measured" for _, _, v in targets.model_targets(models)) == 2


@pytest.mark.parametrize("section, args", [
    ("issue10-avx2", ["--layers", "docs/yardstick_zen3_avx2.json", "--geometries", "docs/yardstick_geometries.json",
                      "--models", "docs/yardstick_models_zen3_avx2.json"]),
    ("issue10-avx512", ["--layers", "docs/yardstick_zen4_avx512.json",
                        "--geometries", "docs/yardstick_geometries_zen4_avx512.json",
                        "--models", "docs/yardstick_models_zen4_avx512.json"]),
])
def test_the_doc_tables_are_the_committed_files(section, args, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert targets.main(args) == 0
    printed = capsys.readouterr().out.strip()
    assert _doc_section(section) == printed
    for f in args[1::2]:
        json.loads((ROOT / f).read_text())  # every file named is committed and readable


@pytest.mark.parametrize("section, path", [("yardstick-models-zen3", "docs/yardstick_models_zen3_avx2.json"),
                                           ("yardstick-models-zen4", "docs/yardstick_models_zen4_avx512.json")])
def test_the_doc_models_tables_are_the_committed_file(section, path, monkeypatch, capsys):
    """docs/KERNELS.md rounds 33 and 34's generated sections are `bench_yardstick_models.py --render` of their JSON
    files."""
    models = _benchmark("bench_yardstick_models")
    monkeypatch.chdir(ROOT)
    assert models.main(["--render", path]) == 0
    printed = capsys.readouterr().out.strip()
    body = _doc_section(section)
    assert body == printed
    assert "OV binary / o1" in body  # the OpenVINO twins' table


def test_the_doc_geometries_tables_are_the_committed_file(monkeypatch, capsys, tmp_path):
    """docs/KERNELS.md's yardstick-geometries section is `bench_yardstick.py --render` of its JSON (round 46), and
    --render writes that section (and only it) into a --doc file."""
    layers = _benchmark("bench_yardstick")
    monkeypatch.chdir(ROOT)
    assert layers.main(["--render", "docs/yardstick_geometries.json"]) == 0
    printed = capsys.readouterr().out.strip()
    section = "yardstick-geometries"
    body = _doc_section(section)
    assert body == printed
    assert "--render docs/yardstick_geometries.json" in body and "3x3 64ch 32x32 batch 32" in body
    out = tmp_path / "doc.md"
    out.write_text("a\n<!-- yardstick:begin -->\nold\n<!-- yardstick:end -->\n"
                   f"<!-- {section}:begin -->\nold\n<!-- {section}:end -->\nb\n")
    assert layers.main(["--render", "docs/yardstick_geometries.json", "--doc", str(out)]) == 0
    text = out.read_text()
    assert "<!-- yardstick:begin -->\nold\n<!-- yardstick:end -->" in text and printed in text
