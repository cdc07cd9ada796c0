"""The ``horq`` command line. Each subcommand lives next to the code it drives and registers itself
here through COMMANDS (module path -> ``register(subparsers)``); heavy imports (torch) happen only inside
the command that needs them, so ``horq run`` works on a machine without PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# A plain dict registry: name of the module that defines `register(subparsers)`.
COMMANDS = {
    "train": "horq.nn.cli",
    "eval": "horq.nn.cli",
    "data": "horq.data.cli",
    "demo": "horq.demo",
    "experiment": "horq.experiments.cli",
    "analyze": "horq.experiments.cli",
    "export": "horq.format.cli",
    "summary": "horq.format.cli",
    "run": "horq.runtime.cli",
    "bench": "horq.runtime.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="horq", description="horq: binarized networks with an accuracy guarantee (High-Order Residual Quantization)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    seen = set()
    for module_name in COMMANDS.values():
        if module_name in seen:
            continue
        seen.add(module_name)
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) >= 2 and argv[0] == "bench" and argv[1].endswith(".horq"):
        argv.insert(1, "model")  # `horq bench model.horq` is `horq bench model model.horq`
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as exc:
        # Errors the user can act on: print the message, not a traceback.
        print(f"horq {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
