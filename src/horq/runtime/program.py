"""The executor: a plan's steps, each built once into its callable, run in order; the one graph interpreter.

Every backend runs on it (:class:`horq.runtime.Model`), and so does ``horq bench``'s PyTorch twin of a graph
(:mod:`horq.apps.bench_model`): a backend is only a ``build(step) -> fn`` that makes the call
``fn(*inputs)`` of a planned step (:mod:`horq.runtime.fuse`). Nothing here looks at the arrays, so any array
type runs.
"""

from __future__ import annotations

from horq import format as hformat


class Program:
    """The steps as a list of calls over activation slots (slot 0: the input).

    Each call is a tuple ``(fn, out, ins, free)`` of slot numbers, so a run does no dictionary or attribute
    lookups (~1 us a step, 3% of a small model); ``calls[i]`` is step ``i``'s.

    With ``chain`` (a backend's factory, :func:`horq.runtime.native.chain`), every run of two or more consecutive
    calls whose ``fn`` has a ``core_step`` (an object the factory runs without Python) and one or two inputs is one
    call of ``chain([(core_step, fn, out, ins, free), ...])(env)``, which does what the loop below does for those
    calls: Python's per-step cost (the loop, the layer's wrapper, the binding's dispatch: a few microseconds a step,
    serial at any thread count) is paid once per run. ``calls`` stays step by step (the per-node profiler's).

    Args:
        steps: the plan (:func:`horq.runtime.fuse.plan`), each step's ``free`` filled.
        build: ``build(step) -> fn``, the backend's callable of a step.
        output: the name of the value the program returns.
        chain: the backend's chain factory, or None (every step from Python).
    """

    def __init__(self, steps, build, output: str, chain=None):
        slot = {hformat.INPUT: 0, **{st.name: i + 1 for i, st in enumerate(steps)}}
        self.calls = [(build(st), i + 1, tuple(slot[r] for r in st.inputs), tuple(slot[r] for r in st.free))
                      for i, st in enumerate(steps)]
        self.output = slot[output]
        self.runs = _runs(self.calls, chain)

    def __call__(self, x):
        """Runs the steps on ``x`` (written over only where the plan says it may be: never the input) and
        returns the output value."""
        env = [None] * (len(self.calls) + 1)
        env[0] = x
        for run in self.runs:
            if type(run) is tuple:
                fn, out, ins, free = run
                env[out] = fn(env[ins[0]]) if len(ins) == 1 else fn(*[env[i] for i in ins])
                for i in free:
                    env[i] = None
            else:
                run(env)
        return env[self.output]


def _chains(call) -> bool:
    fn, _, ins, _ = call
    return getattr(fn, "core_step", None) is not None and len(ins) in (1, 2)


def _runs(calls, chain) -> list:
    """``calls`` with every run of two or more chainable calls (:func:`_chains`) replaced by its chain."""
    if chain is None:
        return list(calls)
    runs, i = [], 0
    while i < len(calls):
        j = i
        while j < len(calls) and _chains(calls[j]):
            j += 1
        if j - i >= 2:
            runs.append(chain([(fn.core_step, fn, out, list(ins), list(free)) for fn, out, ins, free in calls[i:j]]))
            i = j
        else:
            runs.append(calls[i])
            i += 1
    return runs
