"""Reference ops against NVIDIA StyleGAN2-ADA's own outputs and gradients (golden files), plus gradchecks, the
fast paths of conv2d_resample against its definition, export, and the error messages."""
import glob
import itertools
import os

import pytest
import torch
import torch.nn.functional as F
from torch.torch_version import TorchVersion

from priors.ops import (backend, bias_act, conv2d_resample, downsample2d, filter2d, modulated_conv2d, setup_filter,
                        upfirdn2d, upsample2d)
from priors.ops.bias_act import ACTIVATIONS, resolve
from priors.ops.upfirdn2d import parse_padding

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "ops")
CASES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(DATA, "*.pt")))
OPS = {"upfirdn2d": lambda i, a: upfirdn2d(i["x"], i.get("f"), impl="ref", **a),
       "conv2d_resample": lambda i, a: conv2d_resample(i["x"], i["w"], i.get("f"), **a),
       "modulated_conv2d": lambda i, a: modulated_conv2d(i["x"], i["weight"], i["styles"], noise=i.get("noise"),
                                                         resample_filter=i.get("resample_filter"), **a),
       "bias_act": lambda i, a: bias_act(i["x"], i.get("b"), impl="ref", **a)}
TOL = dict(atol=1e-5, rtol=1e-5)


def load(name):
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(os.path.join(DATA, name + ".pt"), weights_only=True)


def test_every_op_has_golden_cases():
    assert len(CASES) == 54
    assert {load(c)["op"] for c in CASES} == set(OPS)


@pytest.mark.parametrize("name", CASES)
def test_golden_outputs_and_gradients(name):
    """meta['how']: y = op(**inputs, **args); loss = (y * dy).sum(); grads[k] = dloss/dinputs[k]; meta['how2']:
    g = dloss/d(inputs[wrt]) (create_graph); L2 = (g * r2).sum(); grads2[k] = dL2/dinputs[k]."""
    g = load(name)
    args = {k: v for k, v in g["args"].items() if not k.startswith("resolved_")}
    if g["op"] == "bias_act":  # the defaults NVIDIA applied are ours
        alpha, gain, _ = resolve(args["act"], args.get("alpha"), args.get("gain"), args.get("clamp"))
        assert (alpha, gain) == pytest.approx((g["args"]["resolved_alpha"], g["args"]["resolved_gain"]))
    inputs = {k: (v.clone().requires_grad_(k in g["grads"]) if isinstance(v, torch.Tensor) else v)
              for k, v in g["inputs"].items()}
    y = OPS[g["op"]](inputs, args)
    torch.testing.assert_close(y, g["outputs"]["y"], **TOL)
    wrt = [k for k in g["grads"] if k != "dy"]
    grads = torch.autograd.grad((y * g["grads"]["dy"]).sum(), [inputs[k] for k in wrt], create_graph=True)
    for k, gr in zip(wrt, grads):
        torch.testing.assert_close(gr, g["grads"][k], **TOL, msg=lambda m, k=k: f"d/d{k}: {m}")
    if g.get("grads2"):
        g2 = g["grads2"]
        first = grads[wrt.index(g2["wrt"])]
        keys = [k for k in g2 if k not in ("wrt", "r2") and isinstance(g2[k], torch.Tensor)]
        assert keys
        if first.requires_grad:
            second = torch.autograd.grad((first * g2["r2"]).sum(), [inputs[k] for k in keys], allow_unused=True)
        else:  # the first derivative does not depend on the inputs (linear): every second derivative is zero
            second = [None] * len(keys)
        for k, gr in zip(keys, second):
            torch.testing.assert_close(gr if gr is not None else torch.zeros_like(g2[k]), g2[k], **TOL,
                                       msg=lambda m, k=k: f"second order d/d{k}: {m}")


# ------------------------------------------------------------------------------------------- gradcheck (fp64)

@pytest.mark.parametrize("f, kwargs", [
    ([1, 3, 3, 1], dict(up=2, padding=(2, 1, 1, 2))),
    ([1, 3, 3, 1], dict(down=2, padding=1, flip_filter=True, gain=3.0)),
    ([1, 2, 3, 4, 5, 6, 7, 8], dict(up=(1, 2), down=(2, 1), padding=(4, 3, 3, 4))),  # separable 1-D filter
    ([[1, 2], [3, 4], [5, 6]], dict(padding=(-1, 2, 0, 1))),  # rectangular, with a crop
    (None, dict(up=2, down=(1, 2), padding=(0, 1, 1, 0))),
])
def test_upfirdn2d_gradcheck_and_gradgradcheck(f, kwargs):
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    f = setup_filter(f).double() if f is not None and torch.tensor(f).ndim == 1 else (
        torch.tensor(f, dtype=torch.float64) if f is not None else None)
    op = lambda t: upfirdn2d(t, f, impl="ref", **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(op, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(op, (x,), fast_mode=True)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_gradcheck_and_gradgradcheck(act):
    x = torch.randn(3, 4, 2, dtype=torch.float64) * 2
    x = x.masked_fill((x.abs() < 0.05) | ((x.abs() - 1.5).abs() < 0.05), 0.5).requires_grad_(True)  # off the kinks
    b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    for kwargs in (dict(), dict(alpha=0.3, gain=0.7, clamp=1.5)):
        op = lambda t, bb, kw=kwargs: bias_act(t, bb, dim=1, act=act, impl="ref", **kw)  # noqa: E731
        assert torch.autograd.gradcheck(op, (x, b), fast_mode=True)
        assert torch.autograd.gradgradcheck(op, (x, b), fast_mode=True)


# ------------------------------------------------------------------------------------ semantics and fast paths

def test_resampling_helpers_shapes_and_mean():
    x = torch.ones(1, 3, 8, 8)
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and float(f.sum()) == pytest.approx(1)
    assert setup_filter([1] * 8).shape == (8,) and setup_filter([1] * 8, separable=False).shape == (8, 8)
    assert upsample2d(x, f).shape == (1, 3, 16, 16) and downsample2d(x, f).shape == (1, 3, 4, 4)
    assert upsample2d(x, f, up=(2, 1)).shape == (1, 3, 8, 16) and filter2d(x, f).shape == x.shape
    torch.testing.assert_close(filter2d(x, f)[..., 2:-2, 2:-2], torch.ones(1, 3, 4, 4))  # a low-pass keeps DC
    torch.testing.assert_close(upsample2d(x, f)[..., 3:-3, 3:-3], torch.ones(1, 3, 10, 10))
    assert parse_padding(1) == (1, 1, 1, 1) and parse_padding([1, 2]) == (1, 1, 2, 2)


def _conv2d_resample_definition(x, w, f, up, down, padding, groups, flip_weight):
    """Zero-insert, pad, filter, convolve, filter, decimate: the definition the fast paths must reproduce."""
    fw, fh = (1, 1) if f is None else (f.shape[-1], f.shape[0])
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=(px0, px1, py0, py1), gain=up**2, impl="ref")
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    return upfirdn2d(x, f, down=down, impl="ref") if down > 1 else x


@pytest.mark.parametrize("k, up, down", [(1, 1, 1), (3, 1, 1), (1, 2, 1), (3, 2, 1), (1, 1, 2), (3, 1, 2),
                                         (3, 2, 2), (2, 2, 1)])
def test_conv2d_resample_fast_paths_match_the_definition(k, up, down):
    torch.manual_seed(k * 10 + up * 3 + down)
    f = setup_filter([1, 3, 3, 1]).double()
    for padding, groups, flip_weight in itertools.product([0, 1, (2, 0, 1, 3)], [1, 2], [True, False]):
        x = torch.randn(2, 4, 5, 4, dtype=torch.float64)
        w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64)
        args = dict(up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight)
        y = conv2d_resample(x, w, f if up > 1 or down > 1 else None, **args)
        ref = _conv2d_resample_definition(x, w, f if up > 1 or down > 1 else None, up, down, padding, groups,
                                          flip_weight)
        torch.testing.assert_close(y, ref, atol=1e-10, rtol=1e-10, msg=lambda m, a=args: f"{a}: {m}")


def test_modulated_conv2d_fused_equals_nonfused_and_demodulates():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    f = setup_filter([1, 3, 3, 1])
    for up in (1, 2):
        a = modulated_conv2d(x, weight, styles, up=up, padding=1, resample_filter=f, fused_modconv=True)
        b = modulated_conv2d(x, weight, styles, up=up, padding=1, resample_filter=f, fused_modconv=False)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # demodulation makes the output independent of the style's scale
    torch.testing.assert_close(modulated_conv2d(x, weight, styles * 7.0, padding=1),
                               modulated_conv2d(x, weight, styles, padding=1), atol=1e-5, rtol=1e-5)


def test_ops_export_with_torch_export():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("f", setup_filter([1, 3, 3, 1]))
            self.weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3))

        def forward(self, x, styles):
            y = modulated_conv2d(x, self.weight, styles, up=2, padding=1, resample_filter=self.f)
            y = bias_act(y, torch.zeros(4), act="lrelu", clamp=2.0)
            return downsample2d(y, self.f)

    m = Block().eval()
    x, s = torch.randn(2, 3, 8, 8), torch.randn(2, 3)
    ep = torch.export.export(m, (x, s))
    torch.testing.assert_close(ep.module()(x, s), m(x, s))


# ------------------------------------------------------------------------------------------------------ errors

def test_errors_name_what_was_expected_and_what_came():
    with pytest.raises(ValueError, match=r"expected x of shape \(N, C, H, W\), got torch.Size\(\[3, 4\]\)"):
        upfirdn2d(torch.zeros(3, 4), None)
    with pytest.raises(ValueError, match=r"padding: expected an int, \(x, y\) or \(x0, x1, y0, y1\), got \(1, 2, 3\)"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="up and down must be >= 1"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, up=0)
    with pytest.raises(ValueError, match="leaves no output"):
        upfirdn2d(torch.zeros(1, 1, 2, 2), torch.ones(5, 5))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="floating-point"):
        upfirdn2d(torch.zeros(1, 1, 4, 4, dtype=torch.int64), None)
    with pytest.raises(ValueError, match="non-empty 1-D or 2-D"):
        setup_filter([])
    with pytest.raises(ValueError, match=r"act must be one of \['elu', 'linear'"):
        bias_act(torch.zeros(2), act="gelu")
    with pytest.raises(ValueError, match=r"expected b of shape \(3,\) for x \(2, 3\) and dim=1, got \(4,\)"):
        bias_act(torch.zeros(2, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="clamp must be None or >= 0"):
        bias_act(torch.zeros(2, 3), clamp=-1)
    with pytest.raises(ValueError, match="impl: expected 'auto', 'cuda' or 'ref'"):
        bias_act(torch.zeros(2, 3), impl="fast")
    with pytest.raises(RuntimeError, match=r"impl='cuda'"):
        bias_act(torch.zeros(2, 3), impl="cuda")  # CPU tensors never run the compiled ops
    with pytest.raises(RuntimeError, match=r"impl='cuda'"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, impl="cuda")
    info = backend()
    assert info["backend"] in ("ref", "cuda") and info["reason"]


def test_conv_errors():
    x, w, f = torch.zeros(1, 4, 8, 8), torch.zeros(5, 4, 3, 3), setup_filter([1, 3, 3, 1])
    with pytest.raises(ValueError, match="needs a filter f"):
        conv2d_resample(x, w, up=2)
    with pytest.raises(ValueError, match="x has 4 channels but w expects 2 x 1 groups"):
        conv2d_resample(x, torch.zeros(5, 2, 3, 3))
    with pytest.raises(ValueError, match="groups must be an int >= 1 dividing 5"):
        conv2d_resample(x, torch.zeros(5, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="up and down must be integers >= 1"):
        conv2d_resample(x, w, f, up=1.5)
    assert conv2d_resample(x, w, f, up=2, padding=1).shape == (1, 5, 16, 16)
    assert conv2d_resample(x, w, f, down=2, padding=1).shape == (1, 5, 4, 4)
    with pytest.raises(ValueError, match=r"expected styles \(1, 4\), got \(1, 3\)"):
        modulated_conv2d(x, w, torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"expected x \(N, 4, H, W\) for weight \(5, 4, 3, 3\), got \(1, 2, 8, 8\)"):
        modulated_conv2d(torch.zeros(1, 2, 8, 8), w, torch.zeros(1, 4))


def test_force_routes_auto_calls():
    from priors.ops import _backend

    x = torch.randn(1, 2, 4, 4)
    with _backend.force("ref"):
        assert not _backend.use_cuda(x, "auto")
    with _backend.force("cuda"):
        with pytest.raises(RuntimeError, match=r"impl='cuda'"):
            _backend.use_cuda(x, "auto")  # a CPU tensor never runs the compiled ops
    assert not _backend.use_cuda(x, "auto")  # restored
    with pytest.raises(ValueError, match="impl"):
        with _backend.force("fast"):
            pass
