"""filtered_lrelu's reference path against NVIDIA StyleGAN3's own outputs and gradients (golden files), gradchecks
in fp64, export, dispatch and the error messages."""
import glob
import math
import os

import pytest
import torch

from priors.ops import filtered_lrelu, setup_filter, upfirdn2d
from priors.ops.filtered_lrelu import output_size

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "sg3")
CASES = sorted(os.path.basename(p)[len("filtered_lrelu__"):-3]
               for p in glob.glob(os.path.join(DATA, "filtered_lrelu__*.pt")))


def load(case):
    return torch.load(os.path.join(DATA, f"filtered_lrelu__{case}.pt"), weights_only=True)


def test_all_twelve_golden_cases_are_here():
    assert len(CASES) == 12


@pytest.mark.parametrize("case", CASES)
def test_golden_outputs_and_gradients(case):
    """meta['how']: y = filtered_lrelu(x, fu, fd, b, impl='ref', **args); loss = (y * dy).sum(); grads = dloss/d."""
    g = load(case)
    inputs = {k: (v.clone().requires_grad_(k in g["grads"]) if isinstance(v, torch.Tensor) else v)
              for k, v in g["inputs"].items()}
    y = filtered_lrelu(inputs["x"], inputs["fu"], inputs["fd"], inputs["b"], impl="ref", **g["args"])
    assert y.shape == g["outputs"]["y"].shape == (*inputs["x"].shape[:2], *output_size(
        *inputs["x"].shape[2:], inputs["fu"], inputs["fd"], g["args"]["up"], g["args"]["down"], g["args"]["padding"]))
    torch.testing.assert_close(y, g["outputs"]["y"], atol=1e-5, rtol=1e-5)
    wrt = [k for k in g["grads"] if k != "dy"]
    grads = torch.autograd.grad((y * g["grads"]["dy"]).sum(), [inputs[k] for k in wrt])
    for k, gr in zip(wrt, grads):
        torch.testing.assert_close(gr, g["grads"][k], atol=1e-5, rtol=1e-5, msg=lambda m, k=k: f"d/d{k}: {m}")


def test_flip_filter_matters_and_is_a_flipped_filter():
    g = load("nonsquare_asym2d_noflip")
    i, a = g["inputs"], dict(g["args"])
    flipped = filtered_lrelu(i["x"], i["fu"].flip([0, 1]), i["fd"].flip([0]), i["b"], impl="ref",
                             **{**a, "flip_filter": True})
    torch.testing.assert_close(flipped, g["outputs"]["y"], atol=1e-5, rtol=1e-5)
    plain = filtered_lrelu(i["x"], i["fu"], i["fd"], i["b"], impl="ref", **{**a, "flip_filter": True})
    assert (plain - g["outputs"]["y"]).abs().max() > 1e-2


@pytest.mark.parametrize("fu, fd, kwargs", [
    ([1, 3, 3, 1], [1, 3, 3, 1], dict(up=2, down=2, padding=(2, 1, 2, 1), clamp=0.8)),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9], [[1, 2], [3, 4]], dict(up=1, down=2, padding=(4, 4, 4, 4), slope=0.1)),
    (None, None, dict(gain=1.0, slope=1.0, clamp=0.5)),
])
def test_gradcheck_and_gradgradcheck_in_fp64(fu, fd, kwargs):
    torch.manual_seed(0)
    x = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, dtype=torch.float64, requires_grad=True)

    def filt(f):
        if f is None:
            return None
        t = torch.tensor(f, dtype=torch.float64)
        return setup_filter(t, separable=True).double() if t.ndim == 1 else t / t.sum()

    fu, fd = filt(fu), filt(fd)
    fn = lambda x, b: filtered_lrelu(x, fu, fd, b, impl="ref", **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_exports_with_torch_export():
    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("fu", setup_filter(torch.hann_window(14)[1:-1], separable=True))
            self.register_buffer("fd", setup_filter(torch.ones(4, 4)))
            self.b = torch.nn.Parameter(torch.randn(3))

        def forward(self, x):
            return filtered_lrelu(x, self.fu, self.fd, self.b, up=2, down=2, padding=(7, 7, 7, 7), clamp=1.0)

    m, x = Layer().eval(), torch.randn(2, 3, 8, 8)
    ep = torch.export.export(m, (x,))
    torch.testing.assert_close(ep.module()(x), m(x))


def test_cpu_tensors_take_the_reference_path_and_cuda_is_refused():
    x = torch.randn(1, 1, 4, 4)
    torch.testing.assert_close(filtered_lrelu(x), filtered_lrelu(x, impl="ref"))
    with pytest.raises(RuntimeError, match=r"impl='cuda'"):
        filtered_lrelu(x, impl="cuda")


def test_errors_name_what_was_expected_and_what_came():
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"expected a floating-point x of shape \(N, C, H, W\)"):
        filtered_lrelu(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"expected b of shape \(3,\) for x \(1, 3, 4, 4\), got \(2,\)"):
        filtered_lrelu(x, b=torch.zeros(2))
    with pytest.raises(ValueError, match="up and down must be integers >= 1"):
        filtered_lrelu(x, up=(2, 1))
    with pytest.raises(ValueError, match="clamp must be None or >= 0"):
        filtered_lrelu(x, clamp=-1)
    with pytest.raises(ValueError, match="leaves no output"):
        filtered_lrelu(x, fd=torch.ones(6))
    with pytest.raises(ValueError, match="fu None or a 1-D or 2-D tensor"):
        filtered_lrelu(x, fu=torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="impl: expected"):
        filtered_lrelu(x, impl="fast")


def test_equals_its_definition_with_the_existing_ops():
    """Independent of the golden files: the steps spelled out with upfirdn2d and elementwise PyTorch."""
    torch.manual_seed(1)
    x, b = torch.randn(2, 3, 6, 7), torch.randn(3)
    fu, fd = setup_filter(torch.rand(10) + 0.1, separable=True), setup_filter(torch.rand(3, 3) + 0.1)
    y = filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=(5, 4, 6, 3), gain=1.3, slope=0.1, clamp=1.5)
    t = upfirdn2d(x + b[:, None, None], fu, up=2, padding=(5, 4, 6, 3), gain=4)
    t = (torch.where(t >= 0, t, 0.1 * t) * 1.3).clamp(-1.5, 1.5)
    torch.testing.assert_close(y, upfirdn2d(t, fd, down=2), atol=1e-6, rtol=1e-6)
    assert math.isclose(float(t.abs().max()), 1.5)
