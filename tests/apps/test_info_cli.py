"""`horq info`: the installation's version, CPU, kernel paths (with what a path this CPU cannot run lacks), threads
and optional packages, as text or one JSON object."""

from __future__ import annotations

import json

from horq import _core, kernels
from horq.apps import info_cli
from horq.apps.cli import main, version


def test_info_text(capsys, monkeypatch):
    monkeypatch.setenv(kernels.KERNEL_ENV, "generic")
    assert main(["info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"horq {version()}"
    assert out[2].startswith(f"kernel path in use: generic (available: {', '.join(_core.available_kernels())};")
    assert out[3].startswith(f"kernel threads: {kernels.get_num_threads()} ")
    numpy_version = info_cli.gather()["packages"]["numpy"]
    assert numpy_version and f"numpy {numpy_version}" in out[-1]


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == version() and report["available"] == list(_core.available_kernels())
    assert report["in_use"] == report["available"][0] and set(report["missing"]) == (
        set(report["known"]) - set(report["available"]))
    assert set(report["packages"]) == set(info_cli.PACKAGES)


def test_info_says_what_a_path_lacks():
    report = {"version": "9", "cpu": "Some Xeon", "vendor": "GenuineIntel", "in_use": "avx2",
              "available": ["avx2", "generic"], "threads": 4, "cpu_flags_reported": True,
              "missing": {"avx512": ["avx512_vpopcntdq"]}, "packages": {"numpy": "2.0", "torch": None}}
    text = info_cli.lines(report)
    assert text[1] == "CPU: Some Xeon (GenuineIntel)"
    assert "not on this CPU: avx512 (lacks avx512_vpopcntdq)" in text
    assert text[-1] == "packages: numpy 2.0, torch not installed"
    report["missing"] = {"avx512": [], "avx2": []}
    assert "not on this CPU: avx2 (the CPU's own check refused it)" in info_cli.lines(report)
    report["cpu_flags_reported"] = False
    assert "not on this CPU: avx512 (the OS reports no CPU flags)" in info_cli.lines(report)
