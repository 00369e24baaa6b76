"""Reference ops against NVIDIA StyleGAN2-ADA's own outputs and gradients (golden files), plus gradchecks."""
import glob
import os

import pytest
import torch
from torch.torch_version import TorchVersion

from priors.ops import backend, conv2d_resample, modulated_conv2d, bias_act, downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "ops")
CASES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(DATA, "*.pt")))
OPS = {"upfirdn2d": lambda i, a: upfirdn2d(i["x"], i.get("f"), impl="ref", **a),
       "conv2d_resample": lambda i, a: conv2d_resample(i["x"], i["w"], i.get("f"), **a),
       "modulated_conv2d": lambda i, a: modulated_conv2d(i["x"], i["weight"], i["styles"], noise=i.get("noise"),
                                                         resample_filter=i.get("resample_filter"), **a),
       "bias_act": lambda i, a: bias_act(i["x"], i.get("b"), impl="ref", **a)}


def load(name):
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(os.path.join(DATA, name + ".pt"), weights_only=True)


@pytest.mark.parametrize("name", CASES)
def test_golden_outputs_and_gradients(name):
    g = load(name)
    args = {k: v for k, v in g["args"].items() if not k.startswith("resolved_")}
    inputs = {k: (v.clone().requires_grad_(k in g["grads"]) if isinstance(v, torch.Tensor) else v)
              for k, v in g["inputs"].items()}
    y = OPS[g["op"]](inputs, args)
    torch.testing.assert_close(y, g["outputs"]["y"], atol=1e-5, rtol=1e-5)
    wrt = [k for k in g["grads"] if k != "dy"]
    grads = torch.autograd.grad((y * g["grads"]["dy"]).sum(), [inputs[k] for k in wrt], create_graph=True)
    for k, gr in zip(wrt, grads):
        torch.testing.assert_close(gr, g["grads"][k], atol=1e-5, rtol=1e-5, msg=f"d/d{k}")
    if g.get("grads2"):
        g2 = g["grads2"]
        first = grads[wrt.index(g2["wrt"])]
        keys = [k for k in g2 if k not in ("wrt", "r2") and isinstance(g2[k], torch.Tensor)]
        if first.requires_grad:
            second = torch.autograd.grad((first * g2["r2"]).sum(), [inputs[k] for k in keys], allow_unused=True)
        else:  # the first derivative is constant (linear activation): every second derivative is zero
            second = [None] * len(keys)
        for k, gr in zip(keys, second):
            ref = g2[k]
            torch.testing.assert_close(gr if gr is not None else torch.zeros_like(ref), ref, atol=1e-5, rtol=1e-5,
                                       msg=f"second order d/d{k}")


def test_gradcheck_fp64():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    f = setup_filter([1, 3, 3, 1]).double()
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, f, up=2, down=1, padding=(2, 1, 1, 2), impl="ref"), (x,))
    assert torch.autograd.gradgradcheck(lambda t: downsample2d(t, f, impl="ref"), (x,))
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    for act in ("lrelu", "swish", "softplus", "tanh"):
        assert torch.autograd.gradgradcheck(lambda t, bb: bias_act(t, bb, act=act, impl="ref"), (x, b))


def test_resampling_helpers_shapes_and_mean():
    x = torch.ones(1, 3, 8, 8)
    f = setup_filter([1, 3, 3, 1])
    assert upsample2d(x, f).shape == (1, 3, 16, 16) and downsample2d(x, f).shape == (1, 3, 4, 4)
    assert torch.allclose(filter2d(x, f)[..., 2:-2, 2:-2], torch.ones(1, 3, 4, 4))  # normalised filter keeps DC
    assert torch.allclose(upsample2d(x, f)[..., 3:-3, 3:-3], torch.ones(1, 3, 10, 10))


def test_errors_and_backend():
    with pytest.raises(ValueError, match=r"expected x of shape \(N, C, H, W\)"):
        upfirdn2d(torch.zeros(3, 4), None)
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="no output"):
        upfirdn2d(torch.zeros(1, 1, 2, 2), torch.ones(5, 5))
    with pytest.raises(ValueError, match="act must be one of"):
        bias_act(torch.zeros(2), act="gelu")
    with pytest.raises(ValueError, match=r"expected b of shape \(3,\)"):
        bias_act(torch.zeros(2, 3), torch.zeros(4))
    with pytest.raises(RuntimeError, match="impl='cuda'"):
        bias_act(torch.zeros(2, 3), impl="cuda")
    assert backend()["backend"] == "ref" and backend()["reason"]


def test_conv2d_resample_errors():
    x, w = torch.zeros(1, 4, 8, 8), torch.zeros(5, 4, 3, 3)
    with pytest.raises(ValueError, match="needs a filter"):
        conv2d_resample(x, w, up=2)
    with pytest.raises(ValueError, match="4 channels but w expects 2 x 1 groups"):
        conv2d_resample(x, torch.zeros(5, 2, 3, 3))
    assert conv2d_resample(x, w, setup_filter([1, 3, 3, 1]), up=2, padding=1).shape == (1, 5, 16, 16)
