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

    Args:
        steps: the plan (:func:`horq.runtime.fuse.plan`), each step's ``free`` filled.
        build: ``build(step) -> fn``, the backend's callable of a step.
        output: the name of the value the program returns.
    """

    def __init__(self, steps, build, output: str):
        slot = {hformat.INPUT: 0, **{st.name: i + 1 for i, st in enumerate(steps)}}
        self.calls = [(build(st), i + 1, tuple(slot[r] for r in st.inputs), tuple(slot[r] for r in st.free))
                      for i, st in enumerate(steps)]
        self.output = slot[output]

    def __call__(self, x):
        """Runs the steps on ``x`` (written over only where the plan says it may be: never the input) and
        returns the output value."""
        env = [None] * (len(self.calls) + 1)
        env[0] = x
        for fn, out, ins, free in self.calls:
            env[out] = fn(env[ins[0]]) if len(ins) == 1 else fn(*[env[i] for i in ins])
            for i in free:
                env[i] = None
        return env[self.output]
