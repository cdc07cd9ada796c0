"""What a person runs, above the library: the ``horq`` command line (:mod:`horq.apps.cli` and one module per
command group), the demo, the benchmarks behind ``horq bench``, the size report (:mod:`horq.apps.summary`)
and the experiments (``horq experiment`` / ``horq analyze``).

Applications may import any library package (``bits``, ``geometry``, ``reference``, ``nn``, ``format``,
``runtime``, ``kernels``, ``data``); no library package imports this one (tests/test_architecture.py). Only the
commands that train or export import torch, when they run.
"""
