"""Runs a packed ``.horq`` model on float32 numpy arrays; never imports torch.

Backends computing the same graph: ``native`` (binary layers on :mod:`horq.kernels`, everything else on
the numpy ops; :mod:`horq.runtime.native`), ``numpy`` (:mod:`horq.runtime.ops`, float32 fast paths) and
``reference`` (:mod:`horq.runtime.reference_ops`, the float64 arithmetic of :mod:`horq.reference`, slow; the
oracle). ``auto`` takes the native one when the extension imports and falls back to numpy otherwise;
``model.backend`` says which one runs and ``model.backend_reason`` why.

Loading a model plans it on the graph first (:func:`horq.runtime.fuse.plan`: the steps and their fusions,
knowing only which nodes run natively), then the backend builds each step's callable once, and
:class:`horq.runtime.program.Program` runs them.

Example:
    >>> import numpy as np, horq.runtime
    >>> model = horq.runtime.load("model.horq")
    >>> logits = model(np.zeros((8, 3, 32, 32), np.float32))

Threads: :func:`set_num_threads` / :func:`num_threads` set the kernels' thread pool and numpy's BLAS pool
together, BLAS at one thread unless asked (its idle threads spin and slow the kernels; :mod:`horq.runtime.threads`).
"""

from __future__ import annotations

import numpy as np

from horq import format as hformat
from horq.runtime import fuse, native, reference_ops
from horq.runtime import ops as np_ops
from horq.runtime.program import Program
from horq.runtime.threads import num_threads, set_num_threads

BACKENDS = ("auto", "native", "numpy", "reference")


def compute_tensors(hfile: hformat.HorqFile) -> dict:
    """The file's tensors as the ops use them: float16-stored parameters upcast to float32 (every op computes
    in float32, or float64 on the reference backend); others as stored."""
    return {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in hfile.tensors.items()}


def _choose(backend: str):
    """``(kernels module or None, backend name, reason)`` for a requested backend.

    Raises:
        ImportError: ``backend="native"`` and :mod:`horq.kernels` is unavailable.
    """
    if backend not in ("auto", "native"):
        return None, backend, "requested"
    try:
        kernels = native.import_kernels()
    except ImportError as exc:
        if backend == "native":
            raise ImportError(f"native backend unavailable: {exc}") from exc
        return None, "numpy", f"native backend unavailable ({exc}); fell back to numpy"
    return kernels, "native", "horq.kernels imported" if backend == "auto" else "requested"


def _builder(backend: str, kernels):
    """The backend's ``build(step) -> fn``: native steps on the kernels, the rest on the numpy ops."""
    if backend == "reference":
        return reference_ops.build
    if backend == "numpy":
        return np_ops.build
    return lambda step: native.build_step(step, kernels)


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
        kernels, self.backend, self.backend_reason = _choose(backend)
        # The input check's finiteness test: the core's where the native backend runs (no mask array; right after a
        # ResNet-18 224x224 call 72-89 us -> 47 us at 1 thread, 32 at 2, docs/KERNELS.md round 24), numpy's otherwise.
        self._all_finite = kernels.all_finite if kernels is not None else (lambda a: bool(np.isfinite(a).all()))
        on_kernels = {n.name for n in self.graph.nodes if native.runs_natively(n)} if kernels else set()
        # The reference backend is the oracle: it runs the graph as written.
        self._steps = fuse.plan(self.graph, compute_tensors(hfile), native=on_kernels, fuse=backend != "reference")
        self._program = Program(self._steps, _builder(self.backend, kernels), self.graph.output,
                                chain=native.chain(kernels) if self.backend == "native" else None)

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
        if not self._all_finite(x):
            raise ValueError("input contains NaN or Inf")
        return x

    def __call__(self, x) -> np.ndarray:
        """Runs the graph on a batch and returns the float32 output ``(N,) + output_shape``."""
        y = self._program(np.ascontiguousarray(self.check_input(x)))
        return y.astype(np.float32, copy=False)  # the reference computes in float64

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
