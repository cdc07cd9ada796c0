"""horq: High-Order Residual Quantization for PyTorch, packed model files and fast CPU kernels.

Importing ``horq`` imports neither torch nor the native extension; each subpackage pulls in what it
needs (``horq.nn`` is the only one that imports torch).
"""

__version__ = "0.1.0"


def export(model, path, **kwargs):
    """Exports a trained PyTorch model to a packed ``.horq`` file (see :func:`horq.nn.export.export`)."""
    from horq.nn.export import export as _export

    return _export(model, path, **kwargs)
