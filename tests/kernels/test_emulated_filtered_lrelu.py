"""The CUDA kernels of csrc/filtered_lrelu.cu themselves (their __global__ bodies, barriers and launches), emulated on
the CPU by tests/kernels/emulate.py: NVIDIA's golden cases (outputs and gradients) and the reference over the paths
of the kernels: several tiles, tiles shrunk to fit shared memory (up 4 with a 12x12 down filter), no filters, every
dtype, and more (n, c) planes than a grid has rows. Runs with `make test-kernels` (skipped where the emulation
harness is absent)."""
import glob
import os

import pytest
import torch
from torch.torch_version import TorchVersion

pytest.importorskip("emulate", reason="the kernel emulation harness (tests/kernels/emulate.py) is not in this tree")

from priors.ops import _backend, bias_act, setup_filter, upfirdn2d  # noqa: E402

GOLDEN = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "data", "sg3", "filtered_lrelu__*.pt")))
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}


def reference(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """filtered_lrelu by its definition (csrc/filtered_lrelu.h) from the reference ops."""
    x = bias_act(x, b, impl="ref") if b is not None else x
    u = upfirdn2d(x, fu, up=up, padding=padding, gain=up * up, flip_filter=flip_filter, impl="ref")
    a = bias_act(u, act="lrelu", alpha=slope, gain=gain, clamp=clamp, impl="ref")
    return upfirdn2d(a, fd, down=down, flip_filter=flip_filter, impl="ref")


def _y_dx(fn, x, dy):
    x = x.detach().clone().requires_grad_()
    y = fn(x)
    return y.detach(), torch.autograd.grad((y * dy).sum(), x)[0]


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: os.path.basename(p)[len("filtered_lrelu__"):-3])
def test_golden_outputs_and_gradients(emulated, path):
    with torch.serialization.safe_globals([TorchVersion]):
        g = torch.load(path, weights_only=True)
    a, i = g["args"], g["inputs"]
    x = i["x"].clone().requires_grad_()
    b = None if i.get("b") is None else i["b"].clone().requires_grad_()
    y = _backend.filtered_lrelu(x, i["fu"], i["fd"], b, a["up"], a["down"], a["padding"], a["gain"], a["slope"],
                                a["clamp"], a["flip_filter"])
    torch.testing.assert_close(y, g["outputs"]["y"], atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad((y * g["grads"]["dy"]).sum(), [x] if b is None else [x, b])
    torch.testing.assert_close(grads[0], g["grads"]["x"], atol=1e-5, rtol=1e-5)
    if b is not None:
        torch.testing.assert_close(grads[1], g["grads"]["b"], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_tiles_filters_and_dtypes(emulated, dtype):
    gen = torch.Generator().manual_seed(0)
    sep = setup_filter(torch.hann_window(14)[1:-1])
    full = torch.outer(sep, sep) + 0.01 * torch.randn(12, 12, generator=gen)
    for shape, fu, fd, up, down, pad, clamp in [((1, 2, 40, 36), sep, sep, 2, 2, (11, 10, 11, 10), 0.5),
                                                ((1, 2, 20, 22), sep, full, 4, 2, (23, 22, 23, 22), None),
                                                ((1, 3, 70, 40), None, None, 1, 1, (0, 0, 0, 0), 0.5)]:
        # inputs rounded to dtype first: the reference then sees the same values (and the same clamp mask)
        x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        b = torch.randn(shape[1], generator=gen, dtype=torch.float64).to(dtype)
        args = (up, down, pad, 2**0.5, 0.2, clamp, False)
        f64 = [None if f is None else f.double() for f in (fu, fd)]
        dy = torch.randn(reference(x.double(), *f64, b.double(), *args).shape, generator=gen, dtype=torch.float64)
        y_ref, dx_ref = _y_dx(lambda t: reference(t, *f64, b.double(), *args), x.double(), dy)
        y, dx = _y_dx(lambda t: _backend.filtered_lrelu(t, fu, fd, b, *args), x, dy.to(dtype))
        assert y.dtype == dx.dtype == dtype
        torch.testing.assert_close(y.double(), y_ref, atol=5 * TOL[dtype], rtol=TOL[dtype])
        torch.testing.assert_close(dx.double(), dx_ref, atol=5 * TOL[dtype], rtol=TOL[dtype])


@pytest.mark.slow
def test_more_planes_than_grid_rows(emulated):
    """65537 planes: the grid's 65535 rows, then the grid-stride loop's second pass (forward and gradient)."""
    gen = torch.Generator().manual_seed(1)
    f = setup_filter([1, 3, 3, 1], separable=True)
    x, args = torch.randn(1, 65537, 2, 2, generator=gen), (2, 2, (3, 2, 3, 2), 1.0, 0.2, None, False)
    dy = torch.randn(1, 65537, 2, 2, generator=gen)
    y_ref, dx_ref = _y_dx(lambda t: reference(t, f, f, None, *args), x, dy)
    y, dx = _y_dx(lambda t: _backend.filtered_lrelu(t, f, f, None, *args), x, dy)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx, dx_ref, atol=1e-5, rtol=1e-5)
