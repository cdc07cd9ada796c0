"""``horq info``: what this installation runs on. The version, the CPU, the native core's kernel paths (the one in
use, the others available, and for each path this CPU cannot run the instruction sets it lacks), the kernels'
thread count and the versions of the optional packages. Needs neither PyTorch nor OpenVINO (their versions come
from the installed packages' metadata, nothing is imported)."""

from __future__ import annotations

import argparse
import json
from importlib import metadata

#: Packages whose versions ``horq info`` reports: the runtime's one dependency, then the optional ones.
PACKAGES = ("numpy", "torch", "openvino")


def register(sub) -> None:
    p = sub.add_parser("info", help="version, CPU, kernel paths and threads of this installation",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines of text")
    p.set_defaults(func=run)


def _version_of(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def gather() -> dict:
    """What ``horq info`` prints, as a dict: ``version``, :func:`horq.kernels.info`'s keys, ``cpu_flags_reported``
    (whether the OS lists the CPU's flags at all) and ``packages`` (name: version, or None where not installed)."""
    from horq import kernels
    from horq.apps.cli import version

    return {"version": version(), **kernels.info(), "cpu_flags_reported": bool(kernels.cpu_flags()),
            "packages": {name: _version_of(name) for name in PACKAGES}}


def lines(report: dict) -> list[str]:
    """The text form of :func:`gather`'s report."""
    from horq.kernels import KERNEL_ENV

    out = [f"horq {report['version']}",
           f"CPU: {report['cpu']}" + (f" ({report['vendor']})" if report["vendor"] else ""),
           f"kernel path in use: {report['in_use']} (available: {', '.join(report['available'])}; "
           f"{KERNEL_ENV}=PATH forces one)",
           f"kernel threads: {report['threads']} (HORQ_NUM_THREADS=N sets them)"]
    for path, lacks in report["missing"].items():
        if lacks:
            why = f"lacks {', '.join(lacks)}"
        else:
            why = "the CPU's own check refused it" if report["cpu_flags_reported"] else "the OS reports no CPU flags"
        out.append(f"not on this CPU: {path} ({why})")
    out.append("packages: " + ", ".join(f"{name} {v}" if v else f"{name} not installed"
                                        for name, v in report["packages"].items()))
    return out


def run(args) -> int:
    report = gather()
    print(json.dumps(report, indent=2) if args.json else "\n".join(lines(report)))
    return 0
