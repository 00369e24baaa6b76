"""The compiled ops' build (priors/ops/_build.py) and dispatch (priors/ops/_backend.py), on a machine without a GPU.

One compile per session: csrc/ for sm_90 into a temporary directory (about 13 s on 2 cores), skipped only when the
CUDA toolchain is missing. The library loads without a GPU, so its CPU kernels, which run the CUDA kernels' own
per-tile and per-element functions one thread after another, are checked here against the reference ops: values,
gradients, double backward, torch.compile and torch.export. tests/priors/test_cuda_ops.py runs the same on a GPU.
"""
import fcntl
import glob
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from torch.torch_version import TorchVersion

from priors.ops import _backend, _build, bias_act, setup_filter, upfirdn2d
from priors.ops.bias_act import ACTIVATIONS, resolve

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "data", "ops", "*.pt")))
GOLDEN = [p for p in GOLDEN if os.path.basename(p).split("__")[0] in ("upfirdn2d", "bias_act")]
PROBLEM = _build.toolchain_problem()
needs_toolchain = pytest.mark.skipif(PROBLEM is not None, reason=f"cannot compile the CUDA ops here: {PROBLEM}")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The session's one compile (plus this machine's GPU architecture, when it has one)."""
    arch = "9.0"
    if torch.cuda.is_available():
        arch += ";{}.{}".format(*torch.cuda.get_device_capability())
    build_dir = tmp_path_factory.mktemp("translate_ops")
    start = time.perf_counter()
    so = _build.compile_only(arch, build_dir)
    seconds = time.perf_counter() - start
    print(f"\ncompiled csrc/ for {arch} in {seconds:.1f} s -> {so}")
    return SimpleNamespace(so=so, dir=build_dir, arch=arch, seconds=seconds)


@pytest.fixture(scope="module")
def ops(built):
    """The library loaded into this process (if another test loaded one already, that one)."""
    return _backend.load_extension(build_dir=built.dir)


# ------------------------------------------------------------------------------------------------- the build

@needs_toolchain
def test_compile_for_sm90(built):
    assert built.so.is_file() and built.so.stat().st_size > 0
    meta = _build.read_meta(built.dir)
    assert meta["cache_key"] == _build.cache_key() and "9.0" in meta["arch"]
    assert "code=sm_90" in (built.dir / "build.ninja").read_text()  # the arch list reached nvcc
    before = (built.so.stat().st_mtime_ns, meta["built_at"])
    assert _build.compile_only("9.0", built.dir) == built.so  # covered already: no second compile
    assert (built.so.stat().st_mtime_ns, _build.read_meta(built.dir)["built_at"]) == before


@needs_toolchain
def test_library_loads_without_gpu_and_registers_schemas(ops):
    assert Path(ops["extension"]).is_file()
    schemas = {name: str(getattr(torch.ops.translate_ops, name).default._schema)
               for name in ("upfirdn2d", "bias_act", "bias_act_grad")}
    assert schemas["upfirdn2d"].startswith("translate_ops::upfirdn2d(Tensor x, Tensor f, int up_x, int up_y")
    assert "Tensor? b, int dim, str act, float alpha, float gain, float clamp" in schemas["bias_act"]
    assert schemas["bias_act_grad"].endswith("int order) -> Tensor")
    for name in schemas:
        for key in ("CPU", "CUDA"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"translate_ops::{name}", key), (name, key)
    info = _backend.backend()
    assert info["extension"] == ops["extension"] and info["cache_key"] == ops["cache_key"]
    if not torch.cuda.is_available():
        assert info["backend"] == "ref" and "no CUDA device" in info["reason"]


@needs_toolchain
def test_build_failure_names_the_error_and_the_log(tmp_path, monkeypatch):
    src = tmp_path / "csrc"
    shutil.copytree(_build.source_dir(), src)
    for name in _build.SOURCES:
        (src / name).write_text("#include <deliberately_missing.h>\n" + (src / name).read_text())  # fatal at once
    monkeypatch.setattr(_build, "PACKAGED_CSRC", src)
    monkeypatch.setenv("MAX_JOBS", "1")
    expected = r"(?s)failed \(exit \d+\); full log: .*build\.log.*deliberately_missing\.h"
    with pytest.raises(_build.BuildError, match=expected):
        _build.compile_only("9.0", tmp_path / "build")
    assert _build.read_meta(tmp_path / "build") is None  # nothing recorded as built


def test_import_builds_nothing(tmp_path):
    code = ("import priors.ops, priors.ops._build as b; import torch; "
            "assert b.loaded() is None; assert not hasattr(torch.ops.translate_ops, 'upfirdn2d')")
    env = dict(os.environ, TRANSLATE_OPS_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=str(ROOT))
    assert not (tmp_path / "cache").exists()


def test_source_dir_prefers_the_packaged_copy_then_the_checkout(tmp_path, monkeypatch):
    assert _build.source_dir() == ROOT / "csrc"  # a checkout has no priors/ops/csrc/ (only a wheel does)
    packaged, checkout = tmp_path / "priors" / "ops" / "csrc", tmp_path / "csrc"
    monkeypatch.setattr(_build, "PACKAGED_CSRC", packaged)
    monkeypatch.setattr(_build, "CHECKOUT_CSRC", checkout)
    expected = rf"sources are missing: expected {re.escape(str(packaged))} .* or {re.escape(str(checkout))} "
    with pytest.raises(_build.BuildError, match=expected):
        _build.source_dir()
    with pytest.raises(_build.BuildError, match="sources are missing"):
        _build.cache_key()  # what backend() and a build ask first
    checkout.mkdir()
    assert _build.source_dir() == checkout
    packaged.mkdir(parents=True)
    assert _build.source_dir() == packaged


def test_cache_key_follows_the_sources(tmp_path):
    src = tmp_path / "csrc"
    shutil.copytree(_build.source_dir(), src)
    key = _build.cache_key(src)
    assert key == _build.cache_key() and len(key) == 16
    (src / "bias_act.h").write_text((src / "bias_act.h").read_text() + "\n// a change\n")
    assert _build.cache_key(src) != key
    (src / "ops.cpp").unlink()
    with pytest.raises(_build.BuildError, match=r"the CUDA sources are missing: expected .*ops\.cpp"):
        _build.cache_key(src)


def test_cache_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv(_build.CACHE_ENV, raising=False)
    assert _build.default_build_dir() == Path("~/.cache/translate_kit/ops").expanduser() / _build.cache_key()
    monkeypatch.setenv(_build.CACHE_ENV, str(tmp_path))
    assert _build.default_build_dir() == tmp_path / _build.cache_key()


def test_build_dir_lock_excludes_other_holders(tmp_path):
    with _build._locked(tmp_path), open(tmp_path / "build.lock", "a") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / "build.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released


def test_rebuilds_only_for_architectures_not_covered(tmp_path, monkeypatch):
    calls = []

    def fake_compiler(build_dir, archs, verbose):
        calls.append(archs)
        _build.library_path(build_dir).write_bytes(b"")
        return 0.0

    monkeypatch.setattr(_build, "_run_compiler", fake_compiler)
    monkeypatch.setattr(_build, "nvcc_version", lambda: (13, 0))
    _build._ensure_built(tmp_path, ["9.0"], None, False)
    _build._ensure_built(tmp_path, [], (9, 0), False)  # an H100: covered
    _build._ensure_built(tmp_path, ["9.0"], None, False)
    _build._ensure_built(tmp_path, [], (8, 6), False)  # an A10: add 8.6, keep 9.0
    _build._ensure_built(tmp_path, [], (8, 9), False)  # sm_86 code runs on 8.9
    _build.compile_only("8.0;9.0", tmp_path)
    assert calls == [["9.0"], ["8.6", "9.0"], ["8.0", "8.6", "9.0"]]
    assert _build.read_meta(tmp_path)["arch"] == ["8.0", "8.6", "9.0"]


def test_arch_lists(monkeypatch):
    monkeypatch.setattr(_build, "nvcc_version", lambda: (13, 0))
    assert _build.parse_arch_list("9.0; 8.0,8.6 9.0+PTX") == ["8.0", "8.6", "9.0", "9.0+PTX"]
    with pytest.raises(_build.BuildError, match=r"expected compute capabilities .*got \['sm_90'\]"):
        _build.parse_arch_list("sm_90")
    too_old = r"nvcc 13\.0 compiles for compute capability 7\.5 and newer, got \['7\.0'\]"
    with pytest.raises(_build.BuildError, match=too_old):
        _build.parse_arch_list("7.0;8.0")
    assert _build.arch_covers(["8.0"], (8, 6)) and not _build.arch_covers(["8.6"], (8, 0))
    assert not _build.arch_covers(["8.0"], (9, 0)) and _build.arch_covers(["8.0+PTX"], (9, 0))


def test_missing_nvcc_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    assert _build.toolchain_problem() == f"CUDA_HOME={tmp_path} has no bin/nvcc"
    with pytest.raises(_build.BuildError, match="has no bin/nvcc"):
        _build.compile_only("9.0", tmp_path / "build")


# ---------------------------------------------------------------------------------------- choosing the backend

def test_cuda_impl_on_cpu_tensor_raises():
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match=r"impl='cuda'.* x is on cpu"):
        upfirdn2d(x, setup_filter([1, 3, 3, 1]), up=2, padding=(2, 1), impl="cuda")
    with pytest.raises(RuntimeError, match=r"impl='cuda'.* x is on cpu"):
        bias_act(x, torch.zeros(2), act="lrelu", impl="cuda")
    with pytest.raises(ValueError, match=r"impl: expected 'auto', 'cuda' or 'ref', got 'gpu'"):
        bias_act(x, impl="gpu")


def test_fallback_warns_once_with_the_reason(monkeypatch):
    def failing_build(**kwargs):
        raise _build.BuildError("nvcc exited with status 1 (a simulated failure)")

    monkeypatch.setattr(_build, "_loaded", None)
    monkeypatch.setattr(_build, "load", failing_build)
    monkeypatch.setitem(_backend._state, "error", None)
    monkeypatch.setitem(_backend._state, "warned", False)
    monkeypatch.setitem(_backend._state, "ready", set())
    on_gpu = SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))  # what use_cuda reads of a CUDA tensor
    with pytest.warns(RuntimeWarning, match=r"reference PyTorch ops run instead: nvcc exited with status 1"):
        assert _backend.use_cuda(on_gpu, "auto") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _backend.use_cuda(on_gpu, "auto") is False  # once
    with pytest.raises(RuntimeError, match=r"impl='cuda'.*unavailable: nvcc exited with status 1"):
        _backend.use_cuda(on_gpu, "cuda")
    info = _backend.backend()
    assert info["backend"] == "ref" and "failed to build or load" in info["reason"] and "status 1" in info["reason"]


# ------------------------------------------------------------------- the kernels' arithmetic, on their CPU versions

FILTERS = {"none": None, "4tap_2d": setup_filter([1, 3, 3, 1]),
           "rect_3x5": torch.randn(3, 5, generator=torch.Generator().manual_seed(1)),
           "8tap_separable": setup_filter([1, 3, 6, 9, 9, 6, 3, 1])}


def _upfirdn2d_cases():
    for fname in FILTERS:
        for up in [(1, 1), (2, 2), (4, 1)]:
            for down in [(1, 1), (2, 2), (1, 4)]:
                for pad in [(0, 0, 0, 0), (2, 1, 1, 2), (-1, 3, 2, -2), (5, 4, 4, 5)]:
                    yield fname, up, down, pad


@needs_toolchain
def test_upfirdn2d_kernel_matches_ref(ops):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 7, generator=gen)
    checked = 0
    for fname, up, down, pad in _upfirdn2d_cases():
        f = FILTERS[fname]
        for flip, gain in [(False, 1.0), (True, 1.7)]:
            try:
                ref = upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl="ref")
            except ValueError:  # no output for this combination
                continue
            out = _backend.upfirdn2d(x, f, up, down, pad, flip, gain)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5,
                                       msg=lambda m, c=(fname, up, down, pad, flip): f"{c}: {m}")
            checked += 1
    assert checked > 250
    # any layout of x; tiles that cover more than one block (64 x 32 outputs per tile)
    f = FILTERS["4tap_2d"]
    for xs in (x.to(memory_format=torch.channels_last), torch.randn(1, 2, 40, 90, generator=gen)[:, :, 3:, ::2]):
        torch.testing.assert_close(_backend.upfirdn2d(xs, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),
                                   upfirdn2d(xs, f, up=2, padding=(2, 1, 2, 1), gain=4.0, impl="ref"))


@needs_toolchain
def test_upfirdn2d_kernel_dtypes_and_errors(ops):
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1], device="cpu").double()
    for dtype, tol in [(torch.float64, 1e-12), (torch.float16, 1e-2), (torch.bfloat16, 5e-2)]:
        out = _backend.upfirdn2d(x.to(dtype), f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4.0, impl="ref"),
                                   atol=tol, rtol=tol)
    op = torch.ops.translate_ops.upfirdn2d
    with pytest.raises(RuntimeError, match=r"expected a non-empty 2-D filter \(fh, fw\), got \[4\]"):
        op(x, torch.ones(4), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="leaves no output"):
        op(x, torch.ones(9, 9), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="does not fit in 49152 bytes of shared memory"):
        op(x, torch.ones(90, 90), 1, 1, 1, 1, 45, 45, 45, 45, False, 1.0)
    with pytest.raises(RuntimeError, match="expected x of dtype float32, float64, float16 or bfloat16, got Int"):
        op(x.int(), torch.ones(1, 1), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(ValueError, match="does not differentiate the filter"):
        _backend.upfirdn2d(x, f.clone().requires_grad_(), (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0)


@needs_toolchain
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_kernel_matches_ref(ops, act):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 3, 4, generator=gen) * 3
    b = torch.randn(5, generator=gen)
    for clamp in (None, 0.7):
        for alpha, gain in ((None, None), (0.3, 0.5)):
            ref = bias_act(x, b, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="ref")
            out = _backend.bias_act(x, b, 1, act, *resolve(act, alpha, gain, clamp))
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for xs, bs, dim in ((x, None, 1), (x, torch.randn(3, generator=gen), 2), (x[:, :, 0, 0], b, 1),
                        (x.reshape(-1), torch.randn(120, generator=gen), 0)):
        ref = bias_act(xs, bs, dim=dim, act=act, impl="ref")
        torch.testing.assert_close(_backend.bias_act(xs, bs, dim, act, *resolve(act, None, None, None)), ref,
                                   atol=1e-5, rtol=1e-5)


@needs_toolchain
def test_bias_act_kernel_dtypes_and_errors(ops):
    x, b = torch.randn(3, 4, 5), torch.randn(4)
    args = resolve("swish", None, None, None)
    ref = bias_act(x, b, act="swish", impl="ref")
    for dtype, tol in [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)]:
        out = _backend.bias_act(x.to(dtype), b.to(dtype), 1, "swish", *args)
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)
    out = _backend.bias_act(x.half(), b, 1, "swish", *args)  # promoted like x + b
    assert out.dtype == torch.float32
    op = torch.ops.translate_ops.bias_act
    with pytest.raises(RuntimeError, match="act must be one of linear, relu, .*got 'gelu'"):
        op(x, b, 1, "gelu", 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match=r"expected b of shape \(5,\) for x \[3, 4, 5\] and dim=2, got \[4\]"):
        op(x, b, 2, "linear", 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="derivatives of order 1 to 2 are implemented, got order 3"):
        torch.ops.translate_ops.bias_act_grad(x, x, b, 1, "tanh", 0.0, 1.0, -1.0, 3)


@needs_toolchain
def test_gradcheck_and_gradgradcheck_fp64(ops):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    for f, up, down, pad, flip in [(setup_filter([1, 3, 3, 1]), (2, 2), (1, 1), (2, 1, 1, 2), False),
                                   (setup_filter([1, 3, 3, 1]), (1, 1), (2, 2), (1, 1, 1, 1), True),
                                   (torch.randn(2, 3, generator=gen), (2, 1), (1, 2), (-1, 3, 2, 0), False),
                                   (torch.tensor([1.0, 2.0, 3.0]), (2, 2), (1, 1), (1, 1, 1, 1), True)]:
        f = f.double()
        fn = lambda t, f=f, a=(up, down, pad, flip): _backend.upfirdn2d(t, f, *a, 1.3)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))
    b = torch.randn(2, dtype=torch.float64, generator=gen, requires_grad=True)
    for act in sorted(ACTIVATIONS):
        for clamp in (None, 0.5):
            args = resolve(act, None, None, clamp)
            fn = lambda t, bb, act=act, args=args: _backend.bias_act(t, bb, 1, act, *args)  # noqa: E731
            assert torch.autograd.gradcheck(fn, (x, b)), act
            assert torch.autograd.gradgradcheck(fn, (x, b)), act


@needs_toolchain
def test_third_derivative_of_bias_act_is_refused(ops):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = _backend.bias_act(x, None, 1, "tanh", 0.0, 1.0, -1.0)
    (g1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x, create_graph=True)
    torch.testing.assert_close(g2, (-2 * torch.tanh(x) * (1 - torch.tanh(x) ** 2)).detach())
    with pytest.raises(NotImplementedError, match="differentiable 2 times; for higher derivatives use impl='ref'"):
        torch.autograd.grad(g2.sum(), x)


class _Block(torch.nn.Module):
    """A StyleGAN2-like step: upsample with the FIR filter, add a bias, leaky ReLU with clamp."""

    def __init__(self):
        super().__init__()
        self.register_buffer("f", setup_filter([1, 3, 3, 1]))
        self.b = torch.nn.Parameter(torch.linspace(-1, 1, 3))

    def forward(self, x):
        y = _backend.upfirdn2d(x, self.f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
        return _backend.bias_act(y, self.b, 1, "lrelu", 0.2, 2**0.5, 1.0)


@needs_toolchain
def test_compile_and_export_trace_the_ops(ops):
    block, x = _Block(), torch.randn(2, 3, 8, 8, requires_grad=True)
    ref = block(x)
    grads_ref = torch.autograd.grad(ref.square().sum(), [x, block.b])
    out = torch.compile(block, backend="aot_eager", fullgraph=True)(x)  # fake impls + autograd formulas traced
    torch.testing.assert_close(out, ref)
    for g, g_ref in zip(torch.autograd.grad(out.square().sum(), [x, block.b]), grads_ref):
        torch.testing.assert_close(g, g_ref)
    n, h = torch.export.Dim("n"), torch.export.Dim("h", min=4)
    ep = torch.export.export(block, (torch.randn(2, 3, 8, 8),), dynamic_shapes={"x": {0: n, 2: h}})
    code = ep.graph_module.code
    assert "translate_ops.upfirdn2d.default" in code and "translate_ops.bias_act.default" in code
    x2 = torch.randn(3, 3, 10, 8)
    torch.testing.assert_close(ep.module()(x2), block(x2))
    assert ep.module()(x2).shape == (3, 3, 20, 16)


@needs_toolchain
def test_public_ops_reach_the_compiled_ops_and_match_nvidia_golden(ops, monkeypatch):
    """Through the public functions with impl="cuda", as on a GPU (the dispatch decision is forced for CPU
    tensors): outputs, gradients and second-order gradients of NVIDIA's reference ops (tests/data/ops)."""
    calls = []
    monkeypatch.setattr(_backend, "use_cuda", lambda x, impl: calls.append(impl) or impl == "cuda")
    public = {"upfirdn2d": lambda i, a: upfirdn2d(i["x"], i.get("f"), impl="cuda", **a),
              "bias_act": lambda i, a: bias_act(i["x"], i.get("b"), impl="cuda", **a)}
    assert len(GOLDEN) >= 30
    for path in GOLDEN:
        with torch.serialization.safe_globals([TorchVersion]):
            g = torch.load(path, weights_only=True)
        name = os.path.basename(path)
        args = {k: v for k, v in g["args"].items() if not k.startswith("resolved_")}
        inputs = {k: v.clone().requires_grad_(k in g["grads"]) for k, v in g["inputs"].items()}
        y = public[g["op"]](inputs, args)
        torch.testing.assert_close(y, g["outputs"]["y"], atol=1e-5, rtol=1e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")
        wrt = [k for k in g["grads"] if k != "dy"]
        grads = torch.autograd.grad((y * g["grads"]["dy"]).sum(), [inputs[k] for k in wrt], create_graph=True)
        for k, gr in zip(wrt, grads):
            torch.testing.assert_close(gr, g["grads"][k], atol=1e-5, rtol=1e-5,
                                       msg=lambda m, c=(name, k): f"{c}: {m}")
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
                torch.testing.assert_close(gr, g2[k], atol=1e-5, rtol=1e-5,
                                           msg=lambda m, c=(name, k): f"{c} 2nd order: {m}")
    assert calls and set(calls) == {"cuda"}


@needs_toolchain
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_the_compiled_kernels_pass_the_self_check(ops, monkeypatch, dtype):
    """The self-check's probes and tolerances (priors/ops/_selfcheck.py) against the kernels' own per-tile and
    per-element code, through the library's CPU kernels: a correct kernel passes in every dtype."""
    from priors.ops import _selfcheck

    monkeypatch.setattr(_backend, "use_cuda", lambda x, impl: impl == "cuda")
    assert _selfcheck.run(torch.device("cpu"), dtype) == []
