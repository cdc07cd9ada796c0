"""The ``horq`` command line. Each group of subcommands has its module in :mod:`horq.apps`, listed in
COMMAND_MODULES (each defines ``register(subparsers)``). Registering never imports torch: the
modules in COMMAND_MODULES define arguments only, and each command imports what it needs (torch for train, eval,
export, experiment) when it runs, so ``horq --help``, ``run``, ``summary``, ``bench FILE.horq`` and ``data``
work on a machine without PyTorch.

Errors: a mistake the user can act on (a bad value, a missing or foreign file, a refused overwrite) is
raised where it is detected as ValueError or OSError with a message naming the path or value, and printed
here as one line with exit status 2 (argparse's usage errors exit 2 too). Ctrl-C exits 130 with one line.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from horq.apps.run_cli import expand_bench_shortcut

# The registry: modules that each define `register(subparsers)` for their commands (in brackets).
COMMAND_MODULES = (
    "horq.apps.train_cli",  # train, eval
    "horq.apps.data_cli",  # data
    "horq.apps.demo",  # demo
    "horq.apps.experiments.cli",  # experiment, analyze
    "horq.apps.export_cli",  # export, summary
    "horq.apps.run_cli",  # run, bench
    "horq.apps.info_cli",  # info
)

#: Exit status of a command stopped by Ctrl-C (128 + SIGINT, what shells report).
EXIT_INTERRUPTED = 130
#: Exit status of a usage or input error (argparse's own).
EXIT_USAGE = 2


def version() -> str:
    """The installed package's version (its metadata), else the source tree's ``horq.__version__``."""
    from importlib import metadata

    try:
        return metadata.version("horq")
    except metadata.PackageNotFoundError:
        import horq

        return getattr(horq, "__version__", "unknown")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="horq",
        description="horq: binarized networks with an accuracy guarantee (High-Order Residual Quantization)",
    )
    parser.add_argument("--version", action="version", version=f"horq {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = expand_bench_shortcut(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    args.argv = argv
    prog = f"horq {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        detail = str(exc)
        print(f"{prog}: interrupted" + (f": {detail}" if detail else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as exc:
        if not (exc.name or "").split(".")[0] == "torch":
            raise
        print(f"{prog}: error: this command needs PyTorch, which is not installed here "
              f"(install torch, then the training extras: pip install \".[train]\"; see the README)", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as exc:
        # Errors the user can act on (FileNotFoundError is an OSError): the message, not a traceback.
        print(f"{prog}: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
