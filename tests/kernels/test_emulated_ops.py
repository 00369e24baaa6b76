"""The CUDA kernels of csrc/ themselves (their __global__ bodies and launches), emulated on the CPU
(tests/kernels/emulate.py), through the translate_ops operators, against the reference PyTorch path.

Shapes are chosen to reach each path of the kernels: several tiles, a filter that shrinks the tiles, more (n, c)
planes than a grid has rows (65535), the grid-stride loop's second pass, channels_last and strided inputs; and the
golden cases of tests/data/ops, whose conv2d_resample and modulated_conv2d reach the kernels through the public ops.
Emulation costs about 0.3 us per GPU thread, so the shapes are otherwise small.
"""
import glob
import os
import random

import pytest
import torch
from torch.torch_version import TorchVersion

from priors.ops import _backend, bias_act, conv2d_resample, modulated_conv2d, setup_filter, upfirdn2d
from priors.ops.bias_act import ACTIVATIONS, resolve

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "ops")
GOLDEN = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(DATA, "*.pt")))
PUBLIC = {"upfirdn2d": lambda i, a: upfirdn2d(i["x"], i.get("f"), **a),
          "conv2d_resample": lambda i, a: conv2d_resample(i["x"], i["w"], i.get("f"), **a),
          "modulated_conv2d": lambda i, a: modulated_conv2d(i["x"], i["weight"], i["styles"], noise=i.get("noise"),
                                                            resample_filter=i.get("resample_filter"), **a),
          "bias_act": lambda i, a: bias_act(i["x"], i.get("b"), **a)}
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
GRID_ROWS = 65535  # a grid's y and z extent on every GPU
BIAS_ACT_STRIDE = 65536 * 256  # bias_act's grid-stride loop: kMaxBlocks blocks of kThreads threads


@pytest.fixture(autouse=True)
def kernels(emulated, monkeypatch):
    """The public ops with impl="auto" take the compiled path for CPU tensors too, as they do on a GPU; the
    calls are counted, so that a test can check it reached the kernels."""
    calls = []
    monkeypatch.setattr(_backend, "use_cuda", lambda x, impl: impl != "ref" and not calls.append(impl))
    return calls


def _close(out, ref, dtype, what):
    """out (dtype) against ref (float64): the tolerance of dtype relative to ref's largest magnitude."""
    assert out.dtype == dtype and out.shape == ref.shape, what
    scale = max(1.0, ref.abs().max().item()) if ref.numel() else 1.0
    tol = TOL[dtype] * scale
    torch.testing.assert_close(out.double(), ref.double(), atol=tol, rtol=TOL[dtype], msg=lambda m: f"{what}: {m}")


# -------------------------------------------------------------------------------------------- the golden cases

@pytest.mark.parametrize("name", GOLDEN)
def test_golden_outputs_and_gradients(name, kernels):
    """NVIDIA's reference outputs, gradients and second-order gradients (tests/data/ops), through the kernels."""
    with torch.serialization.safe_globals([TorchVersion]):
        g = torch.load(os.path.join(DATA, name + ".pt"), weights_only=True)
    args = {k: v for k, v in g["args"].items() if not k.startswith("resolved_")}
    inputs = {k: v.clone().requires_grad_(k in g["grads"]) for k, v in g["inputs"].items()}
    y = PUBLIC[g["op"]](inputs, args)
    if g["op"] in ("upfirdn2d", "bias_act"):  # the others reach the kernels where they resample
        assert kernels, f"{name}: the op did not take the compiled path"
    torch.testing.assert_close(y, g["outputs"]["y"], atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")
    wrt = [k for k in g["grads"] if k != "dy"]
    grads = torch.autograd.grad((y * g["grads"]["dy"]).sum(), [inputs[k] for k in wrt], create_graph=True)
    for k, gr in zip(wrt, grads):
        torch.testing.assert_close(gr, g["grads"][k], atol=1e-5, rtol=1e-5, msg=lambda m, k=k: f"{name} d{k}: {m}")
    if g.get("grads2"):
        g2 = g["grads2"]
        keys = [k for k in g2 if k not in ("wrt", "r2") and isinstance(g2[k], torch.Tensor)]
        first = grads[wrt.index(g2["wrt"])]
        if first.requires_grad:
            second = torch.autograd.grad((first * g2["r2"]).sum(), [inputs[k] for k in keys], allow_unused=True)
        else:  # a constant first derivative (linear, no clamp): every second derivative is zero
            second = [None] * len(keys)
        for k, gr in zip(keys, second):
            gr = torch.zeros_like(g2[k]) if gr is None else gr
            torch.testing.assert_close(gr, g2[k], atol=1e-5, rtol=1e-5, msg=lambda m, k=k: f"{name} 2nd d{k}: {m}")


# ---------------------------------------------------------------------------------- randomised against the ref

def _layout(x, how):
    if how == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if how == "strided":  # every other column of a wider tensor, rows from an offset
        wide = torch.zeros(x.shape[0], x.shape[1], x.shape[2] + 1, x.shape[3] * 2, dtype=x.dtype)
        wide[:, :, 1:, ::2] = x
        return wide[:, :, 1:, ::2]
    return x


def _upfirdn2d_case(rng):
    fw, fh = rng.randint(1, 7), rng.randint(1, 7)
    up, down = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(1, 3), rng.randint(1, 3))
    pad = tuple(rng.randint(-2, 5) for _ in range(4))
    shape = (rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 20), rng.randint(1, 24))
    return (fh, fw), up, down, pad, shape, rng.random() < 0.5, rng.choice([1.0, 0.5, 2.7]), \
        rng.choice(["contiguous", "channels_last", "strided"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_upfirdn2d_random_cases(dtype):
    rng, gen = random.Random(str(dtype)), torch.Generator().manual_seed(5)
    checked = 0
    while checked < 12:
        fsize, up, down, pad, shape, flip, gain, layout = case = _upfirdn2d_case(rng)
        f = torch.randn(*fsize, generator=gen, dtype=torch.float64)
        x64 = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype).double()  # representable in dtype
        try:
            ref = upfirdn2d(x64, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl="ref")
        except ValueError:  # no output for this combination
            continue
        x = _layout(x64.to(dtype), layout).requires_grad_(dtype.itemsize >= 4)
        out = _backend.upfirdn2d(x, f.to(torch.float64 if dtype == torch.float64 else torch.float32), up, down, pad,
                                 flip, gain)
        _close(out, ref, dtype, f"upfirdn2d {case}")
        if x.requires_grad:  # the backward pass is the kernel again, with up and down swapped
            dy = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
            (dx_ref,) = torch.autograd.grad(upfirdn2d(x64.requires_grad_(), f, up=up, down=down, padding=pad,
                                                      flip_filter=flip, gain=gain, impl="ref"), x64, dy)
            (dx,) = torch.autograd.grad(out, x, dy.to(dtype))
            _close(dx, dx_ref, dtype, f"upfirdn2d backward {case}")
        checked += 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_bias_act_random_cases(dtype):
    rng, gen = random.Random(str(dtype) + "b"), torch.Generator().manual_seed(6)
    for act in sorted(ACTIVATIONS):
        ndim = rng.randint(1, 4)
        shape = [rng.randint(1, 9) for _ in range(ndim)]
        dim = rng.randrange(ndim)
        clamp, alpha, gain = rng.choice([None, 0.8, 3.0]), rng.choice([None, 0.1]), rng.choice([None, 1.5])
        x64 = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).to(dtype).double()
        b64 = torch.randn(shape[dim], generator=gen, dtype=torch.float64).to(dtype).double() if rng.random() < 0.8 \
            else None
        case = (act, shape, dim, clamp, alpha, gain, b64 is not None)
        ref = bias_act(x64.requires_grad_(), b64, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="ref")
        x = x64.detach().to(dtype).requires_grad_()
        out = _backend.bias_act(x, None if b64 is None else b64.to(dtype), dim, act, *resolve(act, alpha, gain, clamp))
        _close(out, ref, dtype, f"bias_act {case}")
        dy = torch.randn(shape, generator=gen, dtype=torch.float64)
        (dx_ref,) = torch.autograd.grad(ref, x64, dy)
        (dx,) = torch.autograd.grad(out, x, dy.to(dtype))
        _close(dx, dx_ref, dtype, f"bias_act backward {case}")


# ----------------------------------------------------------------------------- each path of the kernels

F4 = setup_filter([1, 3, 3, 1])


def test_upfirdn2d_several_tiles_and_layouts():
    """An output of 3 x 4 tiles (tiles are at most 64 x 32), from contiguous, channels_last and strided inputs."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 2, 50, 90, generator=gen)
    for layout in ("contiguous", "channels_last", "strided"):
        xs = _layout(x, layout)
        out = _backend.upfirdn2d(xs, F4, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
        assert out.shape == (1, 2, 100, 180)
        _close(out, upfirdn2d(x.double(), F4.double(), up=2, padding=(2, 1, 2, 1), gain=4.0, impl="ref"),
               torch.float32, layout)


@pytest.mark.parametrize("dtype, size", [(torch.float64, 24), (torch.float64, 54), (torch.float32, 76)])
def test_upfirdn2d_filter_that_shrinks_the_tiles(dtype, size):
    """Filters whose input window does not fit in 48 KiB of shared memory for a whole 64 x 32 tile, down to
    a single output per block at the limit (54 x 54 doubles: 23 KiB of taps and 23 KiB of window)."""
    gen = torch.Generator().manual_seed(size)
    f = torch.rand(size, size, generator=gen, dtype=torch.float64)
    x = torch.randn(1, 1, 40, 70, generator=gen, dtype=torch.float64)
    pad = size // 2
    out = _backend.upfirdn2d(x.to(dtype), f.to(dtype), (1, 1), (1, 1), (pad, size - 1 - pad) * 2, True, 1.0)
    ref = upfirdn2d(x, f, padding=(pad, size - 1 - pad) * 2, flip_filter=True, impl="ref")
    _close(out, ref, dtype, f"{size}x{size} filter")


def test_upfirdn2d_more_planes_than_grid_rows():
    """N * C > 65535: the grid has 65535 rows and the blocks of its first rows loop to a second plane. Upsampled
    by 2 with a 4 x 4 filter, the first input sample (the one thread 0 loads) reaches the first two outputs of
    each row, so a thread that loads the next plane before the others are done with this one changes their result."""
    planes = GRID_ROWS + 3
    x = (torch.arange(planes * 4, dtype=torch.float32).reshape(1, planes, 2, 2) * 7) % 97
    f = torch.rand(4, 4, generator=torch.Generator().manual_seed(8))
    out = _backend.upfirdn2d(x, f, (2, 2), (1, 1), (1, 2, 1, 2), False, 1.0)
    ref = upfirdn2d(x.double(), f.double(), up=2, padding=(1, 2, 1, 2), impl="ref")
    assert out.shape == (1, planes, 4, 4)
    _close(out, ref, torch.float32, "planes > 65535")


def test_bias_act_grid_stride_second_pass():
    """More elements than kMaxBlocks * kThreads: every thread loops once more."""
    n = BIAS_ACT_STRIDE + 1000
    x = torch.linspace(-3, 3, n).half()  # (a float16 linspace this long overflows its index)
    out = _backend.bias_act(x, None, 0, "lrelu", 0.2, 2.0, -1.0)
    ref = bias_act(x.double(), act="lrelu", alpha=0.2, gain=2.0, impl="ref")
    _close(out, ref, torch.float16, "second pass")


# ----------------------------------------------------------------------------------------- launch limits

def test_shared_memory_limit_is_enforced_by_the_plan():
    """The largest filters that fit in 48 KiB run (tested above); one more tap row is refused before launch."""
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="does not fit in 49152 bytes of shared memory"):
        torch.ops.translate_ops.upfirdn2d(x, torch.ones(56, 55, dtype=torch.float64), 1, 1, 1, 1, 27, 27, 27, 27,
                                          False, 1.0)


# ------------------------------------------------------------------------- the kernel tests of test_build.py

def test_gradcheck_and_gradgradcheck_fp64():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    for f, up, down, pad, flip in [(F4, (2, 2), (1, 1), (2, 1, 1, 2), False),
                                   (torch.randn(2, 3, generator=gen), (2, 1), (1, 2), (-1, 3, 2, 0), True)]:
        f = f.double()
        fn = lambda t, f=f, a=(up, down, pad, flip): _backend.upfirdn2d(t, f, *a, 1.3)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))
    b = torch.randn(2, dtype=torch.float64, generator=gen, requires_grad=True)
    for act in ("lrelu", "tanh", "swish", "softplus"):
        args = resolve(act, None, None, 0.5)
        fn = lambda t, bb, act=act, args=args: _backend.bias_act(t, bb, 1, act, *args)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, b)), act
        assert torch.autograd.gradgradcheck(fn, (x, b)), act


class _Block(torch.nn.Module):
    """A StyleGAN2-like step: upsample with the FIR filter, add a bias, leaky ReLU with clamp."""

    def __init__(self):
        super().__init__()
        self.register_buffer("f", setup_filter([1, 3, 3, 1]))
        self.b = torch.nn.Parameter(torch.linspace(-1, 1, 3))

    def forward(self, x):
        y = _backend.upfirdn2d(x, self.f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
        return _backend.bias_act(y, self.b, 1, "lrelu", 0.2, 2**0.5, 1.0)


def test_compile_and_export_trace_the_ops():
    block, x = _Block(), torch.randn(2, 3, 8, 8, requires_grad=True)
    ref = block(x)
    grads_ref = torch.autograd.grad(ref.square().sum(), [x, block.b])
    out = torch.compile(block, backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(out, ref)
    for g, g_ref in zip(torch.autograd.grad(out.square().sum(), [x, block.b]), grads_ref):
        torch.testing.assert_close(g, g_ref)
    ep = torch.export.export(block, (torch.randn(2, 3, 8, 8),), dynamic_shapes={"x": {0: torch.export.Dim("n")}})
    assert "translate_ops.upfirdn2d.default" in ep.graph_module.code
    x2 = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(ep.module()(x2), block(x2))
