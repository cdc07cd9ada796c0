"""Runs a packed ``.horq`` model on float32 numpy arrays; never imports torch.

Backends computing the same graph: ``native`` (binary layers on :mod:`horq.kernels`, everything else on
the numpy ops), ``numpy`` (:mod:`horq.runtime.ops`, float32 fast paths) and ``reference`` (the same ops with
the float64 arithmetic of :mod:`horq.reference`, slow; the oracle). ``auto`` takes the native one when the
extension imports and falls back to numpy otherwise; ``model.backend`` says which one runs and
``model.backend_reason`` why.

Example:
    >>> import numpy as np, horq.runtime
    >>> model = horq.runtime.load("model.horq")
    >>> logits = model(np.zeros((8, 3, 32, 32), np.float32))

Threads: :func:`set_num_threads` / :func:`num_threads` set the kernels' and numpy's BLAS thread pools
together (:mod:`horq.runtime.threads`).
"""

from __future__ import annotations

import numpy as np

from horq import format as hformat
from horq.runtime import fuse
from horq.runtime import ops as np_ops
from horq.runtime.threads import num_threads, set_num_threads

BACKENDS = ("auto", "native", "numpy", "reference")


def compute_tensors(hfile: hformat.HorqFile) -> dict:
    """The file's tensors as the ops use them: float16-stored parameters upcast to float32 (every op computes
    in float32, or float64 on the reference backend); others as stored."""
    return {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in hfile.tensors.items()}


class Model:
    """A loaded packed model: call it on a float32 batch ``(N,) + input_shape``.

    Attributes:
        backend: ``"native"``, ``"numpy"`` or ``"reference"``: the backend that runs the binary layers.
        backend_reason: why that backend was chosen (e.g. why ``auto`` fell back to numpy).
        input_shape / output_shape: per-sample shapes (batch axis excluded).
        graph: the validated :class:`horq.format.Graph`.
        info: the file's free-form ``info`` (provenance, sizes).
    """

    def __init__(self, hfile: hformat.HorqFile, *, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.graph = hfile.graph
        self.info = dict(hfile.graph.info)
        self.input_shape = hfile.graph.input_shape
        self.output_shape = hfile.graph.output_shape
        tensors = compute_tensors(hfile)
        native_ops, reason, use_native = {}, "requested", False
        if backend in ("auto", "native"):
            from horq.runtime import native

            try:
                native_ops = native.prepare_all(self.graph, tensors)
                use_native = True
                reason = "horq.kernels imported" if backend == "auto" else "requested"
            except ImportError as exc:
                if backend == "native":
                    raise ImportError(f"native backend unavailable: {exc}") from exc
                reason = f"native backend unavailable ({exc}); fell back to numpy"
        self.backend = "native" if use_native else ("reference" if backend == "reference" else "numpy")
        self.backend_reason = reason
        steps = []
        for node in self.graph.nodes:
            if node.name in native_ops:
                fn, params = native_ops[node.name]
            else:
                dtype = np.float64 if backend == "reference" else np.float32
                fn, params = np_ops.OPS[node.op], np_ops.prepare(node, tensors, dtype=dtype)
            steps.append(fuse.Step(node.name, node.op, fn, node, params, node.inputs))
        # The reference backend is the oracle: it runs the graph exactly as written.
        self._steps = fuse.plan(self.graph, steps, fuse=backend != "reference")
        if native_ops:
            native.finalize(self._steps)
        # The executor's program: activations in a list indexed by step (slot 0: the input), each step as a
        # tuple, so a call does no dictionary or attribute lookups (~1 us a step, 3% of a small model).
        slot = {hformat.INPUT: 0, **{st.name: i + 1 for i, st in enumerate(self._steps)}}
        self._program = [(st.fn, st.node, st.params, i + 1, tuple(slot[r] for r in st.inputs),
                          tuple(slot[r] for r in st.free)) for i, st in enumerate(self._steps)]
        self._output_slot = slot[self.graph.output]

    def __repr__(self) -> str:
        return (
            f"horq.runtime.Model({len(self.graph.nodes)} nodes, input {self.input_shape}, output "
            f"{self.output_shape}, backend={self.backend!r}: {self.backend_reason})"
        )

    def check_input(self, x) -> np.ndarray:
        """Returns ``x`` if it is a finite float32 batch of the model's input shape.

        Raises:
            ValueError: on a non-array, a dtype other than float32, a wrong shape, an empty batch, NaN or Inf.
        """
        if not isinstance(x, np.ndarray):
            raise ValueError(f"input must be a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise ValueError(f"input must be float32, got {x.dtype} (convert with x.astype(np.float32))")
        want = (None,) + tuple(self.input_shape)
        if x.ndim != len(want) or tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"input must have shape (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if x.shape[0] < 1:
            raise ValueError("input batch is empty")
        if not np.isfinite(x).all():
            raise ValueError("input contains NaN or Inf")
        return x

    def __call__(self, x) -> np.ndarray:
        """Runs the graph on a batch and returns the float32 output ``(N,) + output_shape``."""
        env = [None] * (len(self._program) + 1)
        env[0] = np.ascontiguousarray(self.check_input(x))
        for fn, node, params, out, ins, free in self._program:
            env[out] = fn(node, params, env[ins[0]]) if len(ins) == 1 else fn(node, params, *[env[i] for i in ins])
            for i in free:
                env[i] = None
        return env[self._output_slot].astype(np.float32, copy=False)  # the reference computes in float64

    def profile(self, x, *, repeats: int = 20, warmup: int = 2):
        """Per-node times of a call on ``x`` (medians of ``repeats`` runs): a :class:`horq.runtime.profile.Profile`
        whose ``format()`` prints the per-node and per-op tables with each binary layer's binary MAC/s."""
        from horq.runtime.profile import profile

        return profile(self, x, repeats=repeats, warmup=warmup)

    def predict(self, x, *, batch_size: int = 256) -> np.ndarray:
        """Argmax class of every sample of ``x``, run in batches of ``batch_size``."""
        x = self.check_input(x)
        return np.concatenate([self(x[i : i + batch_size]).argmax(axis=1) for i in range(0, len(x), batch_size)])


def load(path, *, backend: str = "auto") -> Model:
    """Loads and validates a ``.horq`` file and prepares it to run.

    Args:
        path: the file.
        backend: ``"auto"`` (native if available, else numpy), ``"native"``, ``"numpy"`` or ``"reference"``.

    Returns:
        A :class:`Model`.

    Raises:
        horq.format.HorqFormatError: the file is invalid.
        ImportError: ``backend="native"`` and :mod:`horq.kernels` is unavailable.
        ValueError: unknown backend.
    """
    return Model(hformat.load(path), backend=backend)


__all__ = ["BACKENDS", "Model", "compute_tensors", "load", "num_threads", "set_num_threads"]
