"""The compiled filtered_lrelu (csrc/filtered_lrelu.{h,cu}) on its CPU version, on a machine without a GPU.

The CPU entry point of translate_ops::filtered_lrelu runs the CUDA kernel's own per-tile stages (load, up pass,
activation, down pass) thread by thread, so these tests check the kernel's tiling and index arithmetic: against
NVIDIA's reference op (the 12 golden cases in tests/data/sg3, outputs and gradients) and against a plain-PyTorch
reference written here from the existing reference ops, over random shapes, factors, filters and paddings. The
library is the one tests/priors/test_build.py loaded, or the build of these sources in the ops cache.
"""
import glob
import itertools
import os

import pytest
import torch
from torch.torch_version import TorchVersion

from priors.ops import _backend, _build, bias_act, setup_filter, upfirdn2d

GOLDEN = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "data", "sg3", "filtered_lrelu__*.pt")))
PROBLEM = _build.toolchain_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"cannot compile the CUDA ops here: {PROBLEM}")


@pytest.fixture(scope="module")
def ops():
    """The library loaded into this process: the one another test module loaded, else the build of these sources
    in the cache (compiled there for sm_90 when missing)."""
    return _backend.load_extension()


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are tiny: one intra-op thread is faster than several (and than several on a busy machine)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def reference(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """filtered_lrelu as its definition reads (csrc/filtered_lrelu.h), from the reference ops: bias, upsample with
    fu (gain up_x * up_y), leaky ReLU times gain, clamp, then filter with fd and keep every down-th sample."""
    up, down = ((up, up) if isinstance(up, int) else up), ((down, down) if isinstance(down, int) else down)
    if b is not None:
        x = bias_act(x, b, impl="ref")
    u = upfirdn2d(x, fu, up=up, padding=padding, gain=up[0] * up[1], flip_filter=flip_filter, impl="ref")
    a = bias_act(u, act="lrelu", alpha=slope, gain=gain, clamp=clamp, impl="ref")
    return upfirdn2d(a, fd, down=down, flip_filter=flip_filter, impl="ref")


def _load(path):
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(path, weights_only=True)


def _grads(fn, x, b, dy):
    """Output, dx and db (None without a bias) of fn(x, b), with loss = (y * dy).sum()."""
    x = x.detach().clone().requires_grad_()
    b = None if b is None else b.detach().clone().requires_grad_()
    y = fn(x, b)
    grads = torch.autograd.grad((y * dy).sum(), [x] if b is None else [x, b])
    return y.detach(), grads[0], (None if b is None else grads[1])


# -------------------------------------------------------------------------------------------------- the schema

def test_operators_are_registered_for_cpu_and_cuda(ops):
    schema = str(torch.ops.translate_ops.filtered_lrelu.default._schema)
    assert schema.startswith("translate_ops::filtered_lrelu(Tensor x, Tensor fu, Tensor fd, Tensor? b, int up_x")
    assert schema.endswith("float gain, float slope, float clamp, bool flip_filter) -> Tensor")
    grad_schema = str(torch.ops.translate_ops.filtered_lrelu_grad.default._schema)
    assert grad_schema.startswith("translate_ops::filtered_lrelu_grad(Tensor dy, Tensor x, Tensor fu, Tensor fd, ")
    for name in ("filtered_lrelu", "filtered_lrelu_grad"):
        for key in ("CPU", "CUDA"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"translate_ops::{name}", key), (name, key)


# ------------------------------------------------------------------------------------------- NVIDIA's golden cases

@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: os.path.basename(p)[len("filtered_lrelu__"):-3])
def test_matches_nvidia_golden_outputs_and_gradients(ops, path):
    g = _load(path)
    a, inputs = g["args"], g["inputs"]
    pad = a["padding"] if isinstance(a["padding"], (list, tuple)) else [a["padding"]] * 4

    def fn(x, b):
        return _backend.filtered_lrelu(x, inputs["fu"], inputs["fd"], b, a["up"], a["down"], pad, a["gain"],
                                       a["slope"], a["clamp"], a["flip_filter"])

    y, dx, db = _grads(fn, inputs["x"], inputs.get("b"), g["grads"]["dy"])
    torch.testing.assert_close(y, g["outputs"]["y"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx, g["grads"]["x"], atol=1e-5, rtol=1e-5)
    if inputs.get("b") is not None:
        torch.testing.assert_close(db, g["grads"]["b"], atol=1e-4, rtol=1e-5)
    else:
        assert "b" not in g["grads"] and db is None


def test_golden_cases_are_all_there():
    names = {os.path.basename(p) for p in GOLDEN}
    assert len(names) == 12 and "filtered_lrelu__up4_down2_radial_nobias.pt" in names


# ---------------------------------------------------------------------------------------- random cases vs reference

def _random_filter(*shape, seed):
    """Asymmetric taps of both signs, with unit L1 norm (outputs stay the size of the inputs)."""
    f = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return f / f.abs().sum()


FILTERS = {"none": None, "sep4": setup_filter([1, 3, 3, 1], separable=True), "sep5": _random_filter(5, seed=0),
           "2d_3x5": _random_filter(3, 5, seed=1), "2d_4x4": setup_filter([1, 3, 3, 1])}
FACTORS = [((1, 1), (1, 1)), ((2, 2), (2, 2)), ((4, 4), (2, 2)), ((1, 1), (2, 2)), ((2, 1), (1, 2))]
PADS = [(3, 2, 1, 4), (-2, 3, 4, -1)]


def _random_cases():
    for (fu, fd), (up, down), pad in itertools.product(itertools.product(FILTERS, repeat=2), FACTORS, PADS):
        yield fu, fd, up, down, pad


def test_matches_reference_over_filters_factors_and_padding(ops):
    """Outputs, and the gradient kernel's dx, over every pair of filters (none, separable, 2-D, asymmetric)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 9, generator=gen)
    b = torch.randn(3, generator=gen)
    checked = 0
    for i, (fu, fd, up, down, pad) in enumerate(_random_cases()):
        flip, gain, slope, clamp = [(False, 2**0.5, 0.2, None), (True, 1.3, 0.05, 0.8), (False, 1.0, 1.0, 0.5)][i % 3]
        filters, args = (FILTERS[fu], FILTERS[fd]), (up, down, pad, gain, slope, clamp, flip)
        try:
            ref = reference(x, *filters, b, *args)
        except ValueError:  # no output for this combination
            continue
        dy = torch.randn(ref.shape, generator=gen)
        ref, dx_ref, _ = _grads(lambda t, bb: reference(t, *filters, bb, *args), x, b, dy)
        out = _backend.filtered_lrelu(x, *filters, b, *args)
        dx = torch.ops.translate_ops.filtered_lrelu_grad(dy, x, *[torch.ones(1) if f is None else f for f in filters],
                                                         b, *up, *down, *pad, gain, slope,
                                                         -1.0 if clamp is None else clamp, flip)
        msg = lambda m, c=(fu, fd, args): f"{c}: {m}"  # noqa: E731
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5, msg=msg)
        torch.testing.assert_close(dx, dx_ref, atol=1e-5, rtol=1e-5, msg=msg)
        checked += 1
    assert checked > 200


def test_many_tiles_any_layout_and_no_bias(ops):
    """Outputs and input gradients that span several 32 x 32 tiles (and tiles shrunk to fit shared memory), inputs
    in any memory layout."""
    gen = torch.Generator().manual_seed(2)
    fu, fd = setup_filter(torch.randn(12, generator=gen).abs()), _random_filter(7, 6, seed=3)
    x = torch.randn(2, 5, 40, 90, generator=gen)
    args = ((2, 2), (2, 2), (10, 9, 8, 11), 2**0.5, 0.2, 1.0, False)
    for xs in (x, x.to(memory_format=torch.channels_last), x[:, :, 3:, ::2]):
        dy = torch.randn(reference(xs, fu, fd, None, *args).shape, generator=gen)
        for b in (None, torch.randn(5, generator=gen)):
            out = _grads(lambda t, bb: _backend.filtered_lrelu(t, fu, fd, bb, *args), xs, b, dy)
            ref = _grads(lambda t, bb: reference(t, fu, fd, bb, *args), xs, b, dy)
            for o, r in zip(out, ref):
                torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)
    x = torch.randn(1, 2, 18, 18, generator=gen)  # up 4: a large upsampled tile per output tile
    args = ((4, 4), (1, 1), (3, 3, 3, 3), 1.0, 0.2, None, True)
    dy = torch.randn(reference(x, fu, fd, None, *args).shape, generator=gen)
    out = _grads(lambda t, bb: _backend.filtered_lrelu(t, fu, fd, bb, *args), x, None, dy)
    ref = _grads(lambda t, bb: reference(t, fu, fd, bb, *args), x, None, dy)
    for o, r in zip(out[:2], ref[:2]):
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)


def test_gradients_match_reference(ops):
    gen = torch.Generator().manual_seed(3)
    x, b = torch.randn(2, 3, 9, 8, generator=gen), torch.randn(3, generator=gen)
    for fu, fd, up, down, pad, clamp in [("sep4", "2d_3x5", (2, 2), (2, 2), (3, 2, 4, 1), 0.7),
                                         ("2d_3x5", "sep5", (4, 4), (2, 2), (-2, 3, 4, -1), None),
                                         ("none", "2d_4x4", (2, 1), (1, 2), (1, 2, 0, 3), 1.0)]:
        args = (FILTERS[fu], FILTERS[fd])
        rest = (up, down, pad, 2**0.5, 0.2, clamp, False)
        y_ref = reference(x, *args, b, *rest)
        dy = torch.randn(y_ref.shape, generator=gen)
        out = _grads(lambda t, bb: _backend.filtered_lrelu(t, *args, bb, *rest), x, b, dy)
        ref = _grads(lambda t, bb: reference(t, *args, bb, *rest), x, b, dy)
        for o, r in zip(out, ref):
            torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)


def test_gradcheck_and_gradgradcheck_fp64(ops):
    """First order through the autograd formula; second order through the compiled ops that formula calls."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, generator=gen, requires_grad=True)
    for fu, fd, up, down, pad, clamp, flip in [("sep4", "sep4", 2, 2, (2, 1, 2, 1), None, False),
                                               ("2d_3x5", "sep5", (2, 1), (1, 2), (1, 2, -1, 3), 0.6, True)]:
        filters, args = (FILTERS[fu].double(), FILTERS[fd].double()), (up, down, pad, 1.3, 0.2, clamp, flip)

        def fn(t, bb, filters=filters, args=args):
            return _backend.filtered_lrelu(t, *filters, bb, *args)

        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))


def test_dtypes_and_promotion(ops):
    gen = torch.Generator().manual_seed(5)
    x, b = torch.randn(1, 2, 6, 7, dtype=torch.float64, generator=gen), torch.randn(2, dtype=torch.float64)
    fu, fd = FILTERS["sep4"].double(), FILTERS["2d_3x5"].double()
    args = (2, 2, (3, 2, 3, 2), 2**0.5, 0.2, 0.9, False)
    dy = torch.randn(reference(x, fu, fd, b, *args).shape, dtype=torch.float64, generator=gen)
    for dtype, tol in [(torch.float64, 1e-12), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)]:
        # the reference on the same rounded inputs: else the clamp's mask may differ where u is near the bound
        xq, bq, dyq = x.to(dtype), b.to(dtype), dy.to(dtype)
        ref, dx_ref, _ = _grads(lambda t, bb: reference(t, fu, fd, bb, *args), xq.double(), bq.double(),
                                dyq.double())
        out, dx, _ = _grads(lambda t, bb: _backend.filtered_lrelu(t, fu, fd, bb, *args), xq, bq, dyq)
        assert out.dtype == dx.dtype == dtype
        torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
        torch.testing.assert_close(dx.double(), dx_ref, atol=tol, rtol=tol)
    assert _backend.filtered_lrelu(x.half(), fu, fd, b.float(), *args).dtype == torch.float32  # like x + b


def test_bad_arguments_are_named(ops):
    op = torch.ops.translate_ops.filtered_lrelu
    x, f = torch.randn(1, 2, 6, 6), torch.ones(4)
    with pytest.raises(RuntimeError, match=r"expected fu to be a non-empty 1-D \(separable\) or 2-D"):
        op(x, torch.ones(2, 2, 2), f, None, 1, 1, 1, 1, 0, 0, 0, 0, 1.0, 0.2, -1.0, False)
    with pytest.raises(RuntimeError, match=r"expected b of shape \(2,\) for x \[1, 2, 6, 6\], got \[3\]"):
        op(x, f, f, torch.zeros(3), 1, 1, 1, 1, 2, 2, 2, 2, 1.0, 0.2, -1.0, False)
    with pytest.raises(RuntimeError, match="leaves no output"):
        op(x, f, torch.ones(9), None, 1, 1, 1, 1, 0, 0, 0, 0, 1.0, 0.2, -1.0, False)
    with pytest.raises(RuntimeError, match="up and down must be >= 1"):
        op(x, f, f, None, 0, 1, 1, 1, 3, 3, 3, 3, 1.0, 0.2, -1.0, False)
    with pytest.raises(RuntimeError, match="do not fit in 49152 bytes of shared memory; use impl='ref'"):
        op(x, torch.ones(120, 120), f, None, 1, 1, 1, 1, 60, 62, 60, 62, 1.0, 0.2, -1.0, False)
    with pytest.raises(RuntimeError, match="expected x of dtype float32, float64, float16 or bfloat16, got Int"):
        op(x.int(), f, f, None, 1, 1, 1, 1, 3, 3, 3, 3, 1.0, 0.2, -1.0, False)
    grad = torch.ops.translate_ops.filtered_lrelu_grad
    with pytest.raises(RuntimeError, match=r"expected dy of shape \[1, 2, 6, 6\] with x's dtype and device"):
        grad(torch.zeros(1, 2, 5, 6), x, f, f, None, 1, 1, 1, 1, 3, 3, 3, 3, 1.0, 0.2, -1.0, False)
    with pytest.raises(ValueError, match="does not differentiate the filters"):
        _backend.filtered_lrelu(x, f.clone().requires_grad_(), f, None, 1, 1, (3, 3, 3, 3), 1.0, 0.2, None, False)


class _Layer(torch.nn.Module):
    """A StyleGAN3-like nonlinearity: up 2, down 2, 12-tap separable filters, a learned bias."""

    def __init__(self):
        super().__init__()
        self.register_buffer("f", setup_filter(torch.hann_window(14)[1:-1]))
        self.b = torch.nn.Parameter(torch.linspace(-1, 1, 3))

    def forward(self, x):
        return _backend.filtered_lrelu(x, self.f, self.f, self.b, 2, 2, (11, 10, 11, 10), 2**0.5, 0.2, 1.0, False)


def test_compile_and_export_trace_the_op(ops):
    layer, x = _Layer(), torch.randn(2, 3, 8, 8, requires_grad=True)
    ref = layer(x)
    grads_ref = torch.autograd.grad(ref.square().sum(), [x, layer.b])
    out = torch.compile(layer, backend="aot_eager", fullgraph=True)(x)  # the fake impl and the autograd formula
    torch.testing.assert_close(out, ref)
    for g, g_ref in zip(torch.autograd.grad(out.square().sum(), [x, layer.b]), grads_ref):
        torch.testing.assert_close(g, g_ref)
    n, h = torch.export.Dim("n"), torch.export.Dim("h", min=4)
    ep = torch.export.export(layer, (torch.randn(2, 3, 8, 8),), dynamic_shapes={"x": {0: n, 2: h}})
    assert "translate_ops.filtered_lrelu.default" in ep.graph_module.code
    x2 = torch.randn(3, 3, 10, 8)
    assert ep.module()(x2).shape == (3, 3, 10, 8)
    torch.testing.assert_close(ep.module()(x2), layer(x2))


def test_stylegan3_renders_nvidias_image_through_the_kernel(ops, monkeypatch):
    """The tiny StyleGAN3-T generator (tests/data/sg3/sg3t_tiny.pt, priors/stylegan3.py) with every op on its
    compiled CPU entry point, as on a GPU: NVIDIA's render to 1e-4, and d(image)/d(ws) as the reference path's."""
    stylegan3 = pytest.importorskip("priors.stylegan3", reason="the StyleGAN3 generator is not in this tree yet")
    g = _load(os.path.join(os.path.dirname(__file__), "..", "data", "sg3", "sg3t_tiny.pt"))
    G = stylegan3.Generator(stylegan3.GeneratorConfig.from_nvidia(g["init_kwargs"]), design_filters=False)
    G.load_state_dict(g["state_dict"], strict=True)
    G.eval()
    calls = []
    monkeypatch.setattr(_backend, "use_cuda", lambda x, impl: impl != "ref")
    monkeypatch.setattr(_backend, "filtered_lrelu", lambda *a, f=_backend.filtered_lrelu, **k: calls.append(1) or
                        f(*a, **k))
    ws = g["ws"][:1].clone().requires_grad_()
    img = G.synthesis(ws)
    assert len(calls) == len([m for m in G.synthesis.modules() if hasattr(m, "up_factor")])
    torch.testing.assert_close(img.detach(), g["img"][:1], atol=1e-4, rtol=0)
    weights = torch.linspace(-1, 1, img.shape[-1])
    (dws,) = torch.autograd.grad((img * weights).sum(), ws)
    monkeypatch.setattr(_backend, "use_cuda", lambda x, impl: False)
    (dws_ref,) = torch.autograd.grad((G.synthesis(ws) * weights).sum(), ws)
    torch.testing.assert_close(dws, dws_ref, atol=1e-3, rtol=1e-4)
