"""The compiled CUDA ops against the reference ops, on a GPU (every test is marked gpu; skipped without CUDA).

The library is built on first use into the cache (priors/ops/_build.py), or reused from the build that
tests/priors/test_build.py loaded earlier in the session.
"""
import itertools

import pytest
import torch

from priors.ops import _backend, backend, bias_act, setup_filter, upfirdn2d
from priors.ops.bias_act import ACTIVATIONS

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float16: dict(atol=1e-2, rtol=1e-2),
       torch.float64: dict(atol=1e-12, rtol=1e-12)}


@pytest.fixture(scope="module", autouse=True)
def ops():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return _backend.load_extension(device=CUDA)


@pytest.fixture(autouse=True)
def full_fp32():
    """The reference path convolves with cuDNN: keep it in full fp32 (no TF32) so that it is an oracle at 1e-5."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


def _filters(gen):
    return {"none": None, "4tap_2d": setup_filter([1, 3, 3, 1], device=CUDA),
            "rect_3x5": torch.randn(3, 5, generator=gen).to(CUDA),
            "4tap_separable": setup_filter([1, 3, 3, 1], device=CUDA, separable=True),
            "8tap_separable": setup_filter([1, 3, 6, 9, 9, 6, 3, 1], device=CUDA)}


UPS = [(1, 1), (2, 2), (4, 4), (2, 1)]
DOWNS = [(1, 1), (2, 2), (4, 4), (1, 2)]
PADS = [(0, 0, 0, 0), (2, 1, 2, 1), (1, 2, 0, 3), (-1, 3, 2, -2), (5, 4, 4, 5)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_upfirdn2d_cuda_matches_ref(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 11, 9, generator=gen).to(CUDA, dtype)
    checked = 0
    for (fname, f), up, down, pad, (flip, gain) in itertools.product(
            _filters(gen).items(), UPS, DOWNS, PADS, [(False, 1.0), (True, 1.0), (False, 2.5)]):
        try:
            ref = upfirdn2d(x.float(), f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl="ref")
        except ValueError:  # no output for this combination
            continue
        out = upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl="cuda")
        assert out.dtype == dtype and out.shape == ref.shape
        torch.testing.assert_close(out.float(), ref, **TOL[dtype],
                                   msg=lambda m, c=(fname, up, down, pad, flip): f"{c}: {m}")
        checked += 1
    assert checked > 800


@pytest.mark.parametrize("shape", [(4, 32, 256, 256), (1, 70000, 4, 4), (2, 3, 130, 70)])
def test_upfirdn2d_cuda_large_and_strided(shape):
    """Many tiles per plane, more planes than a grid's y extent (65535), and inputs in any memory layout."""
    x = torch.randn(shape, device=CUDA)
    f = setup_filter([1, 3, 3, 1], device=CUDA)
    for xs in (x, x.to(memory_format=torch.channels_last), x[:, :, 1:, ::2]):
        for up, down, pad in [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1))]:
            ref = upfirdn2d(xs, f, up=up, down=down, padding=pad, impl="ref")
            torch.testing.assert_close(upfirdn2d(xs, f, up=up, down=down, padding=pad, impl="cuda"), ref,
                                       atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_cuda_matches_ref(act, dtype):
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(4, 16, 9, 7, generator=gen) * 3).to(CUDA, dtype)
    b = torch.randn(16, generator=gen).to(CUDA, dtype)
    for clamp, alpha, gain in [(None, None, None), (0.7, None, None), (None, 0.3, 0.5), (256.0, None, 2.0)]:
        ref = bias_act(x.float(), b.float(), act=act, alpha=alpha, gain=gain, clamp=clamp, impl="ref")
        out = bias_act(x, b, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="cuda")
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, **TOL[dtype])
    for xs, bs, dim in [(x, None, 1), (x, torch.randn(9, generator=gen).to(CUDA, dtype), 2), (x[:, :, 0, 0], b, 1)]:
        ref = bias_act(xs.float(), None if bs is None else bs.float(), dim=dim, act=act, impl="ref")
        torch.testing.assert_close(bias_act(xs, bs, dim=dim, act=act, impl="cuda").float(), ref, **TOL[dtype])


def test_gradients_match_ref_fp32():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 16, 16, generator=gen).to(CUDA)
    b = torch.randn(4, generator=gen).to(CUDA)
    f = setup_filter([1, 3, 3, 1], device=CUDA)
    dy_up = torch.randn(2, 4, 32, 32, generator=gen).to(CUDA)

    def grads(impl):
        xx, bb = x.clone().requires_grad_(), b.clone().requires_grad_()
        y = upfirdn2d(xx, f, up=2, padding=(2, 1, 2, 1), gain=4, impl=impl)
        y = bias_act(y, bb, act="lrelu", clamp=1.5, impl=impl)
        g = torch.autograd.grad((y * dy_up).sum(), [xx, bb], create_graph=True)
        gg = torch.autograd.grad(g[0].square().sum() + g[1].sum(), [xx, bb])  # R1-style second order
        return g + gg

    for out, ref in zip(grads("cuda"), grads("ref")):
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_gradcheck_and_gradgradcheck_fp64():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=gen).to(CUDA).requires_grad_()
    for f, up, down, pad, flip in [([1, 3, 3, 1], 2, 1, (2, 1, 1, 2), False), ([1, 3, 3, 1], 1, 2, 1, True),
                                   ([1, 2, 3], (2, 1), (1, 2), (-1, 3, 2, 0), False)]:
        f = setup_filter(f, device=CUDA).double()
        fn = lambda t, f=f, a=(up, down, pad, flip): upfirdn2d(t, f, *a, gain=1.3, impl="cuda")  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))
    b = torch.randn(2, dtype=torch.float64, generator=gen).to(CUDA).requires_grad_()
    for act in sorted(ACTIVATIONS):
        for clamp in (None, 0.5):
            fn = lambda t, bb, act=act, clamp=clamp: bias_act(t, bb, act=act, clamp=clamp, impl="cuda")  # noqa: E731
            assert torch.autograd.gradcheck(fn, (x, b)), act
            assert torch.autograd.gradgradcheck(fn, (x, b)), act


class _Block(torch.nn.Module):
    """A StyleGAN2-like step through the public ops: upsample with the FIR filter, add a bias, leaky ReLU, clamp."""

    def __init__(self, impl):
        super().__init__()
        self.impl = impl
        self.register_buffer("f", setup_filter([1, 3, 3, 1]))
        self.b = torch.nn.Parameter(torch.linspace(-1, 1, 8))

    def forward(self, x):
        y = upfirdn2d(x, self.f, up=2, padding=(2, 1, 2, 1), gain=4, impl=self.impl)
        return bias_act(y, self.b, act="lrelu", clamp=1.0, impl=self.impl)


def test_torch_compile_and_export():
    block = _Block("cuda").to(CUDA)
    x = torch.randn(2, 8, 16, 16, device=CUDA, requires_grad=True)
    ref = block(x)
    grads_ref = torch.autograd.grad(ref.square().sum(), [x, block.b])
    compiled = torch.compile(block, fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, ref)
    for g, g_ref in zip(torch.autograd.grad(out.square().sum(), [x, block.b]), grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)
    ep = torch.export.export(block, (torch.randn(2, 8, 16, 16, device=CUDA),),
                             dynamic_shapes={"x": {0: torch.export.Dim("n")}})
    assert "translate_ops.upfirdn2d.default" in ep.graph_module.code
    x2 = torch.randn(3, 8, 16, 16, device=CUDA)
    torch.testing.assert_close(ep.module()(x2), block(x2))


def _filtered_lrelu_ref(x, fu, fd, b, up, down, pad, gain, slope, clamp, flip):
    """filtered_lrelu from the reference ops (as in tests/priors/test_filtered_lrelu_kernel.py)."""
    x = bias_act(x, b, impl="ref") if b is not None else x
    u = upfirdn2d(x, fu, up=up, padding=pad, gain=up * up, flip_filter=flip, impl="ref")
    return upfirdn2d(bias_act(u, act="lrelu", alpha=slope, gain=gain, clamp=clamp, impl="ref"), fd, down=down,
                     flip_filter=flip, impl="ref")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_filtered_lrelu_cuda_matches_ref(dtype):
    """StyleGAN3's layers (up 1/2/4, down 1/2, 12-tap separable and 12x12 radial-like 2-D filters) at sizes with
    many tiles and planes beyond one grid row, and the gradients in fp32."""
    gen = torch.Generator().manual_seed(5)
    sep = setup_filter(torch.hann_window(14)[1:-1], device=CUDA)
    full = torch.outer(sep, sep) + 0.01 * torch.randn(12, 12, generator=gen).to(CUDA)
    for (n, c, h, w), fu, fd, up, down, pad, clamp in [((2, 64, 36, 36), sep, sep, 2, 2, (11, 10, 11, 10), 256.0),
                                                       ((4, 32, 52, 52), sep, full, 4, 2, (23, 22, 23, 22), 0.5),
                                                       ((1, 70000, 4, 4), sep, sep, 2, 2, (11, 10, 11, 10), None),
                                                       ((2, 3, 148, 148), None, None, 1, 1, (0, 0, 0, 0), 0.5)]:
        x = torch.randn(n, c, h, w, generator=gen).to(CUDA, dtype)
        b = torch.randn(c, generator=gen).to(CUDA, dtype)
        args = (up, down, pad, 2**0.5, 0.2, clamp, False)
        ref = _filtered_lrelu_ref(x.float(), fu, fd, b.float(), *args)
        out = _backend.filtered_lrelu(x, fu, fd, b, *args)
        assert out.dtype == dtype and out.shape == ref.shape
        torch.testing.assert_close(out.float(), ref, **TOL[dtype])
        if dtype == torch.float32 and c < 1000:
            dy = torch.randn(ref.shape, generator=gen).to(CUDA)
            grads = [torch.autograd.grad((fn(xx, fu, fd, bb, *args) * dy).sum(), [xx, bb])
                     for fn in (_backend.filtered_lrelu, _filtered_lrelu_ref)
                     for xx, bb in [(x.clone().requires_grad_(), b.clone().requires_grad_())]]
            for g, g_ref in zip(*grads):
                torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


def test_auto_uses_cuda_and_backend_says_so():
    x = torch.randn(1, 2, 8, 8, device=CUDA)
    f = setup_filter([1, 3, 3, 1], device=CUDA)
    torch.testing.assert_close(upfirdn2d(x, f, up=2, padding=(2, 1), impl="auto"),
                               upfirdn2d(x, f, up=2, padding=(2, 1), impl="cuda"), atol=0, rtol=0)
    info = backend()
    assert info["backend"] == "cuda" and info["extension"] and "arch" in info["reason"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_self_check_passes_on_this_device(dtype):
    """The self-check that guards impl="auto" (priors/ops/_selfcheck.py): the compiled kernels agree with the reference
    path on this GPU, forward, backward and double backward, in each dtype."""
    assert _backend.check_device(torch.device("cuda", torch.cuda.current_device()), [dtype]) is None
    assert backend()["selfcheck"].startswith("passed")
