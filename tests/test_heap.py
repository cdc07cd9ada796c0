"""horq.heap.keep_freed_memory: a loop that allocates and frees the same memory stops faulting in fresh pages.

Each check runs in a fresh interpreter (the setting is per process and cannot be undone). The loop holds six
4 MiB arrays at once, then frees them all, as a training step does with its activations: under glibc's default
thresholds the freed heap top is returned to the system every round and the next round faults every page in
again (6,144 faults a round, transparent huge pages off for the check); with the setting, rounds after the
first fault in none of them.
"""

import json
import subprocess
import sys

import pytest

_LOOP = """
import ctypes, json, resource, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: 4 KiB pages, one fault each, whatever the THP mode
import numpy as np
from horq.heap import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "1" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def round_():
    arrays = [np.ones(1 << 20, dtype=np.float32) for _ in range(6)]  # 6 x 4 MiB, live together
    del arrays
round_()
f0 = faults()
for _ in range(10):
    round_()
print(json.dumps([kept, (faults() - f0) / 10]))
"""

ROUND_PAGES = 6 * (4 << 20) // 4096


def _faults_per_round(keep: bool) -> tuple[bool | None, float]:
    out = subprocess.run([sys.executable, "-c", _LOOP, "1" if keep else "0"], check=True, capture_output=True,
                         text=True).stdout
    kept, per_round = json.loads(out.strip().splitlines()[-1])
    return kept, per_round


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds: Linux only")
def test_kept_memory_is_reused_without_page_faults():
    kept, per_round = _faults_per_round(True)
    if not kept:
        pytest.skip("this C library has no mallopt (not glibc)")
    assert per_round < ROUND_PAGES / 20, f"{per_round:.0f} page faults per round with freed memory kept"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds: Linux only")
def test_the_loop_faults_without_the_setting():
    """The check above can fail: without the setting, the same loop faults in a large share of its pages."""
    from horq.heap import keep_freed_memory  # noqa: F401 (importing it changes nothing)

    kept, per_round = _faults_per_round(False)
    assert kept is None
    assert per_round > ROUND_PAGES / 4, f"only {per_round:.0f} page faults per round under glibc's defaults"


def test_keep_freed_memory_is_set_once():
    from horq.heap import keep_freed_memory

    assert keep_freed_memory() is keep_freed_memory()  # cached: one mallopt per process
