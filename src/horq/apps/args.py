"""Argparse value types the ``horq`` commands share, torch-free like every command's registration.

Every command declares its arguments with these, so ``horq --help`` and the torch-free commands (``run``,
``summary``, ``bench FILE.horq``, ``data``) start without PyTorch, and a bad value is one line naming the flag.
"""

from __future__ import annotations

import argparse
import math
import os
import re

#: Most threads a command accepts: far above any useful count, far below what exhausts the system.
MAX_THREADS = max(256, 4 * (os.cpu_count() or 1))


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, threads, epochs)."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def thread_count(text: str) -> int:
    """A thread count: an integer from 1 to :data:`MAX_THREADS`."""
    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_THREADS} threads, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (warm-up runs, seeds)."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (weight decay, clip)."""
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def parse_order(text: str) -> int | None:
    """CLI spelling of a layer order: ``fp``/``none``/``full`` = full precision, or an integer >= 0."""
    if text.lower() in ("fp", "none", "full"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"order must be 'fp' or an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"order must be 'fp' or an integer >= 0, got {text!r}")
    return value


def parse_model_arg(text: str):
    """``KEY=VALUE`` with a positive finite number as value (int if it reads as one, else float)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"model option must be KEY=VALUE, got {text!r}")
    for kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            continue
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"model option {key!r} must be a number > 0, got {raw!r}")
        return key, value
    raise argparse.ArgumentTypeError(f"model option {key!r} needs a number, got {raw!r}")


def section_name(text: str) -> str:
    """The name of a generated section of a markdown file (``<!-- name:begin -->``): a letter, then letters, digits,
    ``_`` or single ``-`` between them (a marker is an HTML comment, which ``--`` would end)."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*", text):
        raise argparse.ArgumentTypeError(f"expected a section name (letters, digits, _ and single -), got {text!r}")
    return text
