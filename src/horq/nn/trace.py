"""Graph capture for :func:`horq.export`: the model's eval-mode forward as a ``torch.fx`` graph.

Why ``torch.fx`` symbolic tracing and not ``torch.export``: ``torch.export`` lowers everything to ATen ops,
including the inside of horq's own layers, whose input quantization (the residual loop, the betas) and
``alpha * sign(W)`` would have to be pattern-matched back out of dozens of ops. An fx tracer can keep a
module whole: :class:`Tracer` treats ``HORQConv2d``/``HORQLinear`` and PyTorch's own layers as leaves, so
each appears as one ``call_module`` node that carries its module path (the node's name in the file and in
error messages), and everything users write between them (``torch.relu``, ``out += identity``,
``x.mean((2, 3))``, ``torch.cat``, ``x.view(x.size(0), -1)``) as ``call_function``/``call_method`` nodes.
The tracer also records each node's enclosing module (``nn_module_stack``) and, with
``record_stack_traces``, the user's source line, so an unsupported op is named with both.

Symbolic tracing runs ``forward`` on proxies, so Python control flow that depends on tensor values cannot
be traced (fx raises; :func:`capture` turns that into an :class:`ExportError`). Everything else a module
does is in the graph: nothing is walked or guessed from the module tree.
"""

from __future__ import annotations

import os
import re
import traceback
from typing import Any, cast

import torch
from torch import fx, nn

#: The name under which :func:`capture` holds the user's model; stripped from every module path.
ROOT = "model"
_TORCH_DIR = os.path.dirname(torch.__file__)
_FRAME_RE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class ExportError(ValueError):
    """The model contains something the ``.horq`` format cannot express."""


def is_horq_layer(m: nn.Module) -> bool:
    """A conv/linear layer carrying horq's ``order`` (``HORQConv2d``/``HORQLinear`` or a subclass)."""
    return isinstance(m, (nn.Conv2d, nn.Linear)) and hasattr(m, "order")


def _torch_base_forward(m: nn.Module):
    """The ``forward`` of the nearest PyTorch (``torch.nn``) class in ``m``'s hierarchy, or None."""
    for cls in type(m).__mro__:
        if cls.__module__.startswith(("torch.nn.", "torch.ao.nn.")) and cls is not nn.Module:
            return cast(Any, cls).forward
    return None


class Tracer(fx.Tracer):
    """Keeps horq's layers and PyTorch's layers whole (leaves); traces through everything else.

    A subclass of a PyTorch layer is a leaf only if it keeps that layer's ``forward`` (so it computes what
    the PyTorch layer does); one that overrides it is traced through, its ops lowered one by one.
    """

    def __init__(self):
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _CONTAINERS):
            return False
        if is_horq_layer(m):
            return True
        base = _torch_base_forward(m)
        return base is not None and type(m).forward is base


class _Root(nn.Module):
    """Holds the user's model as a child: fx stores tensor constants on the traced root, and this keeps
    them off the user's module; a model that is itself a leaf (a lone layer) becomes one ``call_module``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        setattr(self, ROOT, model)

    def forward(self, x):
        return getattr(self, ROOT)(x)


def capture(model: nn.Module) -> fx.GraphModule:
    """Traces ``model``'s eval-mode forward (training flags are restored afterwards).

    Returns:
        A ``GraphModule`` whose root holds ``model`` under :data:`ROOT` (module paths start with it).

    Raises:
        ExportError: when torch.fx cannot trace the forward (data-dependent control flow and the like).
    """
    root = _Root(model)
    modes = {m: m.training for m in model.modules()}
    tracer = Tracer()
    try:
        model.eval()
        graph = tracer.trace(root)
    except ExportError:
        raise
    except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError... from inside user code
        where = ""
        if tracer.module_stack:
            path, typ = list(tracer.module_stack.values())[-1]
            where = f" in module {display_path(path)!r} of type {getattr(typ, '__name__', typ)}"
        user = [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_file(f.filename)]
        if user:
            where += f" (at {user[-1].filename}:{user[-1].lineno}: {(user[-1].line or '').strip()})"
        raise ExportError(f"cannot trace the model with torch.fx{where}: {type(exc).__name__}: {exc}") from exc
    finally:
        for m, mode in modes.items():
            m.training = mode
    return fx.GraphModule(root, graph)


def module_path(qualified: str) -> str:
    """A traced module path without the :data:`ROOT` prefix: ``"model.layer1.0"`` -> ``"layer1.0"``."""
    if qualified == ROOT:
        return ""
    return qualified[len(ROOT) + 1 :] if qualified.startswith(ROOT + ".") else qualified


def display_path(qualified: str) -> str:
    """The path as error messages show it (the model itself is ``'model'``)."""
    return module_path(qualified) or ROOT


def scope(node: fx.Node) -> tuple[str, str]:
    """``(module path, module type name)`` of the module whose forward created ``node`` (for a
    ``call_module`` node, the called module's enclosing module)."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    if node.op == "call_module" and stack:
        stack = stack[:-1]
    if not stack:
        return "", "model"
    path, typ = stack[-1]
    return module_path(path), getattr(typ, "__name__", str(typ))


def source_line(node: fx.Node) -> str | None:
    """``"file.py:12: code"`` of the innermost frame of user code that created ``node``, if recorded."""
    lines = (node.stack_trace or "").splitlines()
    found = None
    for i, line in enumerate(lines):
        m = _FRAME_RE.match(line)
        if not m or not _is_user_file(m["file"]):
            continue
        code = lines[i + 1].strip() if i + 1 < len(lines) and not _FRAME_RE.match(lines[i + 1]) else ""
        found = f"{m['file']}:{m['line']}: {code}" if code else f"{m['file']}:{m['line']}"
    return found


def _is_user_file(path: str) -> bool:
    """Not PyTorch's own code, nor the exporter's (the frames above and below the user's forward)."""
    return not path.startswith(_TORCH_DIR) and os.path.dirname(path) != os.path.dirname(__file__)


def op_name(node: fx.Node) -> str:
    """How an error message names a traced op: ``torch.sin``, ``Tensor.sort``, ``operator.mul``."""
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    name = getattr(target, "__name__", str(target))
    mod = getattr(target, "__module__", None) or ""
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch.nn.functional") or mod == "torch._C._nn":
        return f"torch.nn.functional.{name}"
    return f"torch.{name}" if mod.startswith("torch") or mod == "" else f"{mod}.{name}"


def describe(node: fx.Node, module: nn.Module | None = None) -> str:
    """The start of an error message about ``node``: what it is, where in the model, and the source line."""
    if node.op == "call_module":
        text = f"cannot export module {display_path(cast(str, node.target))!r} of type {type(module).__name__}"
    else:
        path, typ = scope(node)
        text = f"cannot export op {op_name(node)!r} in module {path or ROOT!r} of type {typ}"
    line = source_line(node)
    return f"{text} (at {line})" if line else text


__all__ = ["ExportError", "ROOT", "Tracer", "capture", "describe", "display_path", "is_horq_layer", "module_path",
           "op_name", "scope", "source_line"]
