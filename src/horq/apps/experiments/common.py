"""What every experiment writes besides its numbers: the machine, the date, the command; file helpers."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from horq.fileio import atomic_write_text


def parse_order(text: str) -> int | None:
    """``fp`` (or ``none``) = full precision, else an integer order >= 0; raises ValueError otherwise."""
    if str(text).lower() in ("fp", "none", "full"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"order must be 'fp' or an integer >= 0, got {text!r}") from None
    if value < 0:
        raise ValueError(f"order must be 'fp' or an integer >= 0, got {text!r}")
    return value


def order_label(order: int | None) -> str:
    """Human name of an order: FP, 0 (BWN), 1 (XNOR), K (HORQ)."""
    if order is None:
        return "FP"
    return {0: "0 (BWN)", 1: "1 (XNOR)"}.get(order, f"{order} (HORQ)")


def order_key(order: int | None) -> str:
    """File/JSON key of an order: ``fp`` or ``o<K>``."""
    return "fp" if order is None else f"o{order}"


def load_avg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    """CPU model, kernel paths of :func:`horq.kernels.info`, CPU count, load, versions, UTC date."""
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "load_avg_1_5_15": load_avg(),
    }
    try:
        from horq import kernels

        k = kernels.info()
        info.update(cpu=k["cpu"], kernel_paths=k["available"], kernel_in_use=k["in_use"])
    except Exception as exc:  # noqa: BLE001 - the extension may be missing; say so instead of failing
        info.update(cpu=platform.processor() or platform.machine(), kernel_paths=None,
                    kernel_in_use=f"unavailable ({exc})")
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def machine_line(m: dict) -> str:
    """One markdown line naming the machine (docs/RESULTS.md quotes it beside every table)."""
    load = m.get("load_avg_1_5_15")
    return (f"{m['date']}; CPU: {m['cpu']} ({m['cpu_count']} logical CPUs, load average {load} at the start: "
            f"other processes were running); native kernel path {m['kernel_in_use']} "
            f"(available: {m['kernel_paths']}); PyTorch {m.get('torch')}.")


def report_header(result: dict) -> list[str]:
    """The first lines of every experiment's markdown: the command that produced it and the machine."""
    return [f"Command: `{result['command']}`" if result.get("command") else "", "",
            f"Machine: {machine_line(result['machine'])}", ""]


def save_report(out: Path, stem: str, result: dict, markdown, plot=None) -> None:
    """Writes an experiment's ``STEM.json`` (every number), ``STEM.md`` (``markdown(result)``) and, with a
    ``plot(result, path)``, ``STEM.png`` into ``out``."""
    write_json(out / f"{stem}.json", result)
    write_text(out / f"{stem}.md", markdown(result))
    if plot is not None:
        plot(result, out / f"{stem}.png")


def command_line(argv: list[str] | None) -> str:
    """The ``horq ...`` command that produced a result, for the reader to rerun."""
    return "horq " + " ".join(shlex.quote(a) for a in (argv or []))


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
