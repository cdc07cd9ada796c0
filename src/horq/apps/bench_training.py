"""``horq bench training``: the time of one optimizer step per order against full precision (issue 13).

One step is what ``horq train`` does per batch: zero_grad, forward, cross-entropy, backward, Adam step, on a
random standardized batch (the data does not change the arithmetic's cost). Each configuration is warmed up,
then timed ``repeats`` times; the median is reported. HORQ rows run on the native training path
(:mod:`horq.nn.native_train`) and, with ``torch_path=True``, also on the torch path.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from horq.heap import keep_freed_memory
from horq.nn.native_train import native_training

#: Per-sample input shapes of the zoo models benchmarked by default (their datasets' shapes).
DEFAULT_SHAPES = {"mnist-mlp": (1, 28, 28), "mnist-cnn": (1, 28, 28), "cifar-vgg": (3, 32, 32),
                  "resnet18": (3, 32, 32)}


def _model(name: str, order, in_shape, num_classes: int):
    from horq.nn.convert import HORQConfig, convert_
    from horq.nn.zoo import build_model

    torch.manual_seed(0)
    model = build_model(name, in_shape=in_shape, num_classes=num_classes)
    if order is not None:
        convert_(model, HORQConfig(order=order))
    return model.train()


class _Trainer:
    """One configuration's model, Adam and batch; :meth:`step` runs and times one optimizer step."""

    def __init__(self, name, order, *, batch, native, in_shape, num_classes=10, channels_last=False):
        self.model = _model(name, order, in_shape, num_classes)
        if channels_last:  # PyTorch's NHWC kernels: parameters (4-d weights) and the batch
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randn((batch, *in_shape), generator=gen)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, num_classes, (batch,), generator=gen)
        self.native = native

    def step(self) -> tuple[float, float]:
        """Seconds of one step: wall clock, and CPU time of this process (all its threads)."""
        with native_training(self.native):
            t0, c0 = time.perf_counter(), time.process_time()
            self.opt.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(self.x), self.y).backward()
            self.opt.step()
            return time.perf_counter() - t0, time.process_time() - c0


def _set_threads(n: int) -> None:
    from horq import kernels

    keep_freed_memory()  # what `horq train` runs under, for every configuration alike (horq/heap.py)
    torch.set_num_threads(n)
    kernels.set_num_threads(n)


def step_time(name: str, order, *, batch: int = 64, threads: int = 1, native: bool = True, repeats: int = 5,
              warmup: int = 2, in_shape=None, num_classes: int = 10) -> float:
    """Median seconds of one optimizer step of model ``name`` at ``order`` (None = full precision)."""
    _set_threads(threads)
    trainer = _Trainer(name, order, batch=batch, native=native, num_classes=num_classes,
                       in_shape=tuple(in_shape or DEFAULT_SHAPES.get(name, (3, 32, 32))))
    times = [trainer.step()[0] for _ in range(warmup + repeats)]
    return statistics.median(times[warmup:])


def bench_training(models, *, orders=(1, 2, 3), threads=(1, 2), batch: int = 64, repeats: int = 5,
                   warmup: int = 2, torch_path: bool = False, channels_last: bool = False,
                   progress=None) -> list[dict]:
    """Rows ``{model, threads, order, path, ms, ratio, cpu_ms, cpu_ratio}`` per model, thread count and
    configuration. ``channels_last``: every configuration (FP included) keeps its model and batch in PyTorch's
    channels_last memory format, whose NHWC kernels make some float models' steps faster.

    The configurations of one model and thread count are timed round-robin (one step each per round), so a
    change of the machine's load hits them alike: ``ms`` is the median wall-clock step time, ``ratio`` the
    median over rounds of (step time / the FP step time of the same round); ``cpu_ms`` and ``cpu_ratio`` the
    same for the CPU time of the process, which on a shared machine does not count the time other processes
    hold the cores (with one thread it is the step's own work; with more it also counts threads spinning
    while they wait).
    """
    rows = []
    for name in models:
        in_shape = DEFAULT_SHAPES.get(name, (3, 32, 32))
        for nt in threads:
            _set_threads(nt)
            configs = [(None, False)] + [(o, nat) for o in orders for nat in ((True, False) if torch_path else (True,))]
            trainers = [_Trainer(name, o, batch=batch, native=nat, in_shape=in_shape, channels_last=channels_last)
                        for o, nat in configs]
            times = [[] for _ in configs]
            for r in range(warmup + repeats):
                for i, trainer in enumerate(trainers):
                    t = trainer.step()
                    if r >= warmup:
                        times[i].append(t)
            for (order, native), ts in zip(configs, times, strict=True):
                row = dict(model=name, threads=nt, order="FP" if order is None else order,
                           path="native" if native else "torch")
                for key, k in (("", 0), ("cpu_", 1)):
                    row[key + "ms"] = 1e3 * statistics.median(t[k] for t in ts)
                    row[key + "ratio"] = statistics.median(t[k] / fp[k] for t, fp in zip(ts, times[0], strict=True))
                rows.append(row)
                if progress:
                    progress(rows[-1])
            del trainers
    return rows


def format_rows(rows: list[dict]) -> str:
    """A markdown table of :func:`bench_training` rows."""
    out = ["| model | threads | order | path | step ms | x FP | CPU ms | CPU x FP |",
           "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['model']} | {r['threads']} | {r['order']} | {r['path']} | {r['ms']:,.0f} | "
                   f"{r['ratio']:.2f} | {r['cpu_ms']:,.0f} | {r['cpu_ratio']:.2f} |")
    out.append("")
    out.append("step ms: median wall-clock time of one optimizer step (batch forward, cross-entropy, backward, Adam); "
               "x FP: median over rounds of the step time / the FP step of the same round; CPU: the same in "
               "process CPU time (not counting other processes' time on a shared machine).")
    return "\n".join(out)


_MEMORY_SCRIPT = """
import json, sys
from horq.apps.bench_training import step_time
name, order, native, batch = json.loads(sys.argv[1])
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current resident size: import-time peaks do not count
step_time(name, order, batch=batch, threads=1, native=native, repeats=1, warmup=1)
print(before, status("VmHWM:"))
"""


def peak_memory(name: str, order, *, native: bool = True, batch: int = 64) -> float:
    """Peak training memory (MiB) of zoo model ``name`` at ``order``: a fresh process imports torch and horq,
    then builds the model, its Adam state and a batch and runs two training steps; the result is its peak
    resident memory during that (Linux ``VmHWM``, reset first) less its resident memory before (the interpreter
    and libraries), i.e. parameters, gradients, optimizer state, the batch and everything a step
    holds at its peak, the activations saved for backward included."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, json.dumps([name, order, native, batch])],
                         check=True, capture_output=True, text=True).stdout
    before, peak = (int(v) for v in out.split()[-2:])
    return (peak - before) / 1024


def peak_memory_rows(models, *, orders=(1, 2, 3), batch: int = 64, torch_path: bool = False) -> str:
    """A markdown table of :func:`peak_memory` per model and order, with the ratio to FP."""
    out = ["| model | order | path | peak MiB | x FP |", "| --- | ---: | --- | ---: | ---: |"]
    for name in models:
        fp = peak_memory(name, None, batch=batch)
        out.append(f"| {name} | FP | torch | {fp:,.0f} | 1.00 |")
        for order in orders:
            for native in (True, False) if torch_path else (True,):
                m = peak_memory(name, order, native=native, batch=batch)
                out.append(f"| {name} | {order} | {'native' if native else 'torch'} | {m:,.0f} | {m / fp:.2f} |")
    return "\n".join(out)
