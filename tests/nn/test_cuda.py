"""The CUDA training path: quantizers, layers, training, resume and the CLI on a GPU, against the CPU.

Skipped where torch sees no CUDA device (CI has none); run on a GPU machine with
``pytest tests/nn/test_cuda.py tests/nn/test_distributed.py``. The checks of what needs no GPU (the
errors for too few GPUs, the float32 setting's restore) are in test_training.py.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from nn_helpers import run_interrupted_and_resumed
from test_nn_layers import CONV_CASES, TOL, _conv, _ref_conv

from horq import reference as ref
from horq.apps.cli import main
from horq.nn import HORQConv2d, HORQLinear
from horq.nn.checkpoint import load_checkpoint, load_model
from horq.nn.quant import binary_weight, residual_binarize
from horq.nn.training import TrainSettings, evaluate, full_float32, train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]

TINY = dict(data="digits", limit_train=512, limit_test=300, batch_size=32, progress=False, lr=2e-3)


def _dyadic(shape, seed):
    """Multiples of 1/16 in [-4, 4]: every sum, mean over a power-of-two count and residual of the quantizers is
    exact in float32, so CPU and GPU must agree bit for bit whatever order they sum in."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-64, 65, shape, generator=g).float() / 16


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("clip", [1.0, None])
def test_quantizers_on_the_gpu_equal_the_cpu_bit_for_bit(order, clip):
    x = _dyadic((4, 6, 32), order)
    g = _dyadic((4, 6, 32), 10 + order)
    outs = {}
    for dev in ("cpu", "cuda"):
        xd = x.detach().to(dev, copy=True).requires_grad_(True)
        approx, planes, betas = residual_binarize(xd, order, dim=-1, clip=clip)
        approx.backward(g.to(dev))
        outs[dev] = [t.detach().cpu() for t in (approx, planes, betas, xd.grad)]
    for name, a, b in zip(("approx", "planes", "betas", "grad"), outs["cpu"], outs["cuda"], strict=True):
        assert torch.equal(a, b), name
    # and both are the definition (float64 numpy)
    want, _, _ = ref.residual_binarize(x.double().numpy(), order, axis=-1)
    np.testing.assert_array_equal(outs["cuda"][0].double().numpy(), want)

    w, gw = _dyadic((6, 4, 2, 2), 20 + order), _dyadic((6, 4, 2, 2), 30 + order)
    res = {}
    for dev in ("cpu", "cuda"):
        wd = w.detach().to(dev, copy=True).requires_grad_(True)
        eff = binary_weight(wd)
        eff.backward(gw.to(dev))
        res[dev] = (eff.detach().cpu(), wd.grad.cpu())
    assert torch.equal(res["cpu"][0], res["cuda"][0]) and torch.equal(res["cpu"][1], res["cuda"][1])


@pytest.mark.parametrize("order", [None, 0, 1, 2, 3])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_on_the_gpu_matches_the_reference_and_the_cpu_gradients(case, order):
    """float64 on the GPU (no TF32 there): the forward against horq.reference, the gradients against the CPU
    layer's (which test_nn_layers checks against hand-composed numpy), both to a few ulps."""
    layer, x = _conv(case, order, seed=3)
    want = _ref_conv(layer, x, order)
    grads = {}
    for dev in ("cpu", "cuda"):
        layer.zero_grad()  # the CPU pass's gradients stay where they are (Module.to moves a .grad in place)
        layer.to(dev)
        xd = x.detach().to(dev, copy=True).requires_grad_(True)
        y = layer(xd)
        assert y.device.type == dev
        y.backward(torch.ones_like(y) * 0.5 + torch.arange(y.numel(), device=dev).reshape(y.shape) % 3)
        if dev == "cuda":
            np.testing.assert_allclose(y.detach().cpu().numpy(), want, **TOL)
        grads[dev] = [xd.grad.cpu().clone(), layer.weight.grad.cpu().clone()]
    for a, b in zip(grads["cpu"], grads["cuda"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_linear_on_the_gpu_matches_the_reference(order):
    torch.manual_seed(order)
    layer = HORQLinear(65, 7, order=order, dtype=torch.float64).cuda()
    x = torch.randn(3, 65, dtype=torch.float64)
    y = layer(x.cuda())
    want = ref.horq_linear(x.numpy(), layer.weight.detach().cpu().numpy(), layer.bias.detach().cpu().numpy(),
                           order=order)
    np.testing.assert_allclose(y.detach().cpu().numpy(), want, **TOL)


def test_native_flags_leave_gpu_layers_on_the_torch_path():
    """``layer.native`` asks for the CPU kernels; on a CUDA tensor the torch path runs and agrees with them."""
    torch.manual_seed(0)
    layer = HORQConv2d(8, 6, 3, padding=1, order=2).eval()
    layer.native = True
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        y_cpu = layer(x)  # the native kernels
        y_gpu = layer.cuda()(x.cuda())
        with full_float32(torch.device("cuda")):
            y_gpu32 = layer(x.cuda())
    assert y_gpu.is_cuda
    # float32 on both sides, summed in different orders: a near-tie residual can flip a sign at order 2
    close = torch.isclose(y_gpu32.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    assert close.float().mean() > 0.99


def test_full_float32_turns_tf32_off_for_the_duration():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 64, 20, 20, generator=g), torch.randn(64, 64, 3, 3, generator=g)
    want = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
    flags_before = _precision_flags()
    with full_float32(torch.device("cuda")):
        y = torch.nn.functional.conv2d(x.cuda(), w.cuda(), padding=1).cpu().double()
        m = (x.reshape(64, -1).T.cuda() @ w.reshape(64, -1).cuda()).cpu().double()
    assert _precision_flags() == flags_before
    # float32 accumulation of 576 products: ~1e-6 relative; TF32 inputs would give ~1e-3
    assert ((y - want).abs().max() / want.abs().max()).item() < 1e-5
    mwant = x.reshape(64, -1).T.double() @ w.reshape(64, -1).double()
    assert ((m - mwant).abs().max() / mwant.abs().max()).item() < 1e-5


def _precision_flags():
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_training_learns_and_agrees_with_the_cpu_and_the_export(tmp_path, channels_last):
    import horq
    import horq.runtime
    from horq.data import load

    flags_before = _precision_flags()
    result = train(TrainSettings(**TINY, model="mnist-cnn", order=2, epochs=3, device="cuda",
                                 channels_last=channels_last, out=str(tmp_path / "run")))
    assert _precision_flags() == flags_before
    model, summary = result.model, result.summary
    assert next(model.parameters()).is_cuda
    losses = [r["train_loss"] for r in summary["epochs"]]
    assert losses[-1] < losses[0] * 0.8, losses
    assert summary["final_test_acc"] > 0.5  # 10 classes: chance is 0.1

    test = load("digits", "test")
    x, y = torch.from_numpy(test.x[:300]), torch.from_numpy(test.y[:300])
    with torch.no_grad():
        logits_gpu = model.eval()(x.cuda()).cpu()
        cpu_model = model.cpu()
        logits_cpu = cpu_model(x)
    # The same weights on CPU: float32 summed in other orders, so a near-tie residual may flip a sign
    same = (logits_gpu.argmax(1) == logits_cpu.argmax(1)).float().mean().item()
    assert same >= 0.99, same
    _, acc_cpu = evaluate(cpu_model, x, y)
    assert abs(acc_cpu - summary["final_test_acc"]) <= 3 / 300

    path = tmp_path / "m.horq"
    horq.export(cpu_model, path, input_shape=tuple(x.shape[1:]))
    rt_pred = horq.runtime.load(path).predict(x.numpy())
    assert (rt_pred == logits_cpu.argmax(1).numpy()).mean() >= 0.99


def test_gpu_resume_continues_exactly(tmp_path, monkeypatch):
    """mnist-mlp (matrix products and elementwise steps, deterministic on one GPU): a run interrupted after its
    first epoch and resumed ends with the parameters of the uninterrupted one."""
    settings = dict(TINY, model="mnist-mlp", order=2, epochs=2, device="cuda")
    straight, ckpt, resumed = run_interrupted_and_resumed(settings, tmp_path, monkeypatch)
    assert ckpt["epoch"] == 1 and len(ckpt["rng"]["cuda"]) == torch.cuda.device_count()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"


def test_cli_gpu_run_evaluates_and_exports_where_no_gpu_is_seen(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "mnist-cnn", "--data", "digits", "--order", "1", "--epochs", "2",
               "--limit-train", "512", "--limit-test", "300", "--device", "cuda", "--no-progress", "--out", str(out)])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["device"] == f"cuda:{torch.cuda.current_device()}"
    model, _ = load_model(out / "last.pt")
    assert not next(model.parameters()).is_cuda
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "horq", "eval", str(out / "last.pt")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert abs(json.loads(done.stdout)["accuracy"] - summary["final_test_acc"]) <= 3 / 300
    done = subprocess.run([sys.executable, "-m", "horq", "export", str(out / "last.pt"), "-o",
                           str(tmp_path / "m.horq")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # resumed on a machine without a GPU: the GPU's generators are left out, the run goes on
    done = subprocess.run([sys.executable, "-m", "horq", "train", "--model", "mnist-cnn", "--data", "digits",
                           "--order", "1", "--epochs", "3", "--limit-train", "512", "--limit-test", "300",
                           "--device", "cpu", "--threads", "2", "--no-progress", "--resume", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(out / "last.pt")["epoch"] == 3


def test_more_processes_than_gpus_is_a_clear_error(tmp_path, capsys):
    n = torch.cuda.device_count() + 1
    rc = main(["train", "--nproc", str(n), "--device", "cuda", "--model", "mnist-mlp", "--data", "digits",
               "--epochs", "1", "--no-progress", "--out", str(tmp_path)])
    assert rc == 2
    assert f"{n} processes on CUDA need one GPU each" in capsys.readouterr().err


def test_convert_and_export_a_model_that_lives_on_the_gpu(tmp_path):
    """`convert_` keeps a GPU model's parameters on the GPU (the HORQ layers take them over), and `horq.export`
    reads a model where it lives: the file is the one the same model on CPU gives, bit for bit."""
    import horq
    from horq.nn import HORQConfig, convert_
    from horq.nn.zoo import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", in_shape=(3, 32, 32), num_classes=10).cuda()
    convert_(model, HORQConfig(order=2))
    assert all(p.is_cuda for p in model.parameters())
    assert any(isinstance(m, HORQConv2d) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y = model.eval()(x.cuda())
    assert y.is_cuda and y.shape == (2, 10)
    on_gpu, on_cpu = tmp_path / "gpu.horq", tmp_path / "cpu.horq"
    horq.export(model, on_gpu, input_shape=(3, 32, 32))
    horq.export(model.cpu(), on_cpu, input_shape=(3, 32, 32))
    assert on_gpu.read_bytes() == on_cpu.read_bytes()
