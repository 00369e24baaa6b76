"""Which implementation of the ops runs, and the compiled operators behind impl="cuda" / "auto".

`use_cuda(x, impl)` decides per call: "ref" never uses the compiled ops; "cuda" uses them or raises with the
reason; "auto" uses them for CUDA tensors when the library builds and loads, else warns once with the reason and
runs the reference PyTorch path. The library (csrc/, built by priors/ops/_build.py) is built and loaded on the first
CUDA call, never at import. It registers torch.ops.translate_ops.{upfirdn2d, bias_act, bias_act_grad,
filtered_lrelu, filtered_lrelu_grad} with CPU and CUDA kernels. Once it is loaded, this module registers their fake
implementations (output shapes, for torch.compile and torch.export) and their autograd formulas, written with the
operators themselves so that they can be differentiated again (double backward for R1 and path-length regularization).

The first time the compiled ops run on a CUDA device in a dtype, the self-check (priors/ops/_selfcheck.py) compares
each op with the reference path on that device in that dtype, forward and backward; a mismatch warns, naming the op
and the probe, and the reference path runs for the rest of the process. $TRANSLATE_OPS_SELFCHECK=0 skips it.
`backend()` reports its outcome.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from priors.ops import _build

IMPLS = ("auto", "cuda", "ref")
SELFCHECK_ENV = "TRANSLATE_OPS_SELFCHECK"  # "0" skips the self-check
MAX_GRAD_ORDER = 2  # bias_act_grad's kernels compute the activations' first and second derivatives

# error: why the compiled ops are unavailable; warned: the fallback was announced; registered: fakes and autograd
# formulas are in place; ready: indices of the CUDA devices the loaded library was checked to run on; checked: the
# (device, dtype) pairs the self-check passed on (or was skipped for); checking: a self-check is running (its probes
# call the ops with impl="cuda").
_state: Dict = {"error": None, "warned": False, "registered": False, "ready": set(), "checked": set(),
                "checking": False}
# the self-check's runner, (device, dtype) -> failures: priors/ops/_selfcheck.py's `run`, registered by the package's
# __init__ (the self-check calls the public ops, which import this module)
_self_checker: Dict[str, Optional[Callable[[torch.device, torch.dtype], List[str]]]] = {"run": None}


def register_self_check(run: Callable[[torch.device, torch.dtype], List[str]]) -> None:
    _self_checker["run"] = run


def self_check_enabled() -> bool:
    return os.environ.get(SELFCHECK_ENV, "1").strip() != "0"


# ------------------------------------------------------------------------------------------------ which path runs

@contextlib.contextmanager
def force(impl: str) -> Iterator[None]:
    """Within the block, every op called with impl="auto" runs `impl` ("ref" or "cuda") instead: for benchmarks and
    parity checks of whole models, whose layers call the ops with the default."""
    if impl not in IMPLS:
        raise ValueError(f"impl: expected 'auto', 'cuda' or 'ref', got {impl!r}")
    before, _state["forced"] = _state.get("forced"), (None if impl == "auto" else impl)
    try:
        yield
    finally:
        _state["forced"] = before


def use_cuda(x: torch.Tensor, impl: str) -> bool:
    """Whether the compiled op runs for x (see the module docstring); builds and loads the library on first use."""
    if impl not in IMPLS:
        raise ValueError(f"impl: expected 'auto', 'cuda' or 'ref', got {impl!r}")
    if impl == "auto" and _state.get("forced"):
        impl = _state["forced"]
    if impl == "ref":
        return False
    if not _compiled_device(x):
        if impl == "cuda":
            raise RuntimeError(f"CUDA ops requested (impl='cuda') but x is on {x.device}: move it to a CUDA device, "
                               "or use impl='auto' or 'ref'")
        return False  # the reference ops are the CPU path
    if _state["checking"]:  # the self-check's own calls: the library is loaded, the probe compares it
        return impl == "cuda"
    reason = _ensure_loaded(x.device)
    if reason is None:
        reason = _self_check(x.device, x.dtype)
    if reason is None:
        return True
    if impl == "cuda":
        raise RuntimeError(f"CUDA ops requested (impl='cuda') but they are unavailable: {reason}")
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(f"priors.ops: the compiled CUDA ops are unavailable, the reference PyTorch ops run instead: "
                      f"{reason}", RuntimeWarning, stacklevel=3)
    return False


def load_extension(build_dir: Optional[os.PathLike] = None, device: Optional[torch.device] = None) -> Dict:
    """Builds (if needed) and loads the compiled ops into this process, registers their autograd formulas, and
    returns what was loaded (see _build.load). Raises _build.BuildError with the reason when that fails."""
    info = _build.load(build_dir=build_dir, device=device)
    _register_python_side()
    return info


def _ensure_loaded(device: torch.device) -> Optional[str]:
    """None once the compiled ops are loaded and built for this device, else why not (a failure is not retried in
    this process)."""
    if device.index in _state["ready"]:
        return None
    if _state["error"] is not None:
        return _state["error"]
    try:
        load_extension(device=device)
    except _build.BuildError as e:
        _state["error"] = str(e)
        return _state["error"]
    _state["ready"].add(device.index)
    return None


def _compiled_device(x: torch.Tensor) -> bool:
    """Whether x is on a device the compiled ops serve (a CUDA device; the tests of the self-check widen it)."""
    return x.is_cuda


@torch.compiler.disable  # runs eagerly when the first call is inside torch.compile
def _self_check(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None once the compiled ops agree with the reference path on this device in this dtype (or the check is
    switched off), else why not; a failure warns once, naming the op and the probe, and turns the compiled ops off
    for the rest of the process. The probes compute real values also when the first call is traced with fake
    tensors (torch.export, FakeTensorMode)."""
    key = (str(device), dtype)
    if key in _state["checked"]:
        return None
    if not self_check_enabled() or _self_checker["run"] is None:
        _state["checked"].add(key)
        return None
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    _state["checking"] = True
    try:
        with unset_fake_temporarily():
            failures = _self_checker["run"](device, dtype)
    finally:
        _state["checking"] = False
    if not failures:
        _state["checked"].add(key)
        return None
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    _state["error"] = f"the self-check of the compiled ops failed: {failures[0]}{more}"
    _state["ready"].clear()
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(f"priors.ops: {_state['error']}; the reference PyTorch ops run for the rest of this process "
                      f"(set {SELFCHECK_ENV}=0 to skip the check)", RuntimeWarning, stacklevel=4)
    return _state["error"]


def check_device(device: torch.device, dtypes=(torch.float32, torch.float16, torch.bfloat16)) -> Optional[str]:
    """Loads the compiled ops for this CUDA device (building them if needed) and runs the self-check in each dtype
    now rather than on first use (`cli.py doctor --check-ops`); None when they are in use, else why not."""
    reason = _ensure_loaded(torch.device(device))
    for dtype in dtypes:
        reason = reason or _self_check(torch.device(device), dtype)
    return reason


def self_check_status() -> str:
    """The self-check's outcome in this process, in words."""
    if not self_check_enabled():
        return f"skipped ({SELFCHECK_ENV}=0)"
    if _state["error"] is not None and _state["error"].startswith("the self-check"):
        return "failed: " + _state["error"].split(": ", 1)[1]
    if _state["checked"]:
        done = sorted(f"{str(dt).replace('torch.', '')} on {dev}" for dev, dt in _state["checked"])
        return "passed (" + ", ".join(done) + ")"
    if not torch.cuda.is_available():
        return "not run (no CUDA device)"
    return "not run yet (it runs on the first call of the compiled ops with a CUDA tensor of each dtype)"


def backend() -> Dict[str, Optional[str]]:
    """Which path the ops take for CUDA tensors in this process and why: {"backend": "cuda" | "ref", "reason",
    "extension" (the library loaded, or a build of these sources found in the cache), "cache_key", "selfcheck" (its
    outcome, in words)}. Reports; never builds. CPU tensors always take the reference path."""
    info = _build.loaded()
    selfcheck = self_check_status()
    if info is not None and torch.cuda.is_available() and _state["error"] is None:
        return {"backend": "cuda", "extension": info["extension"], "cache_key": info["cache_key"],
                "selfcheck": selfcheck,
                "reason": f"compiled ops loaded (arch {';'.join(info['arch'])}): CUDA tensors use them, CPU tensors "
                          "the reference PyTorch ops"}
    try:
        key = _build.cache_key()
        built = _build.library_path(_build.cache_root() / key)
        extension = str(built) if built.exists() else None
    except _build.BuildError as e:  # the sources are missing
        key, extension, problem = None, None, str(e)
    else:
        problem = _build.toolchain_problem()
    if info is not None:  # loaded without a device (the tests of the kernels' CPU versions)
        key, extension = info["cache_key"], info["extension"]
    if _state["error"] is not None:
        reason = f"the compiled CUDA ops failed to build or load, the reference PyTorch ops run: {_state['error']}"
    elif not torch.cuda.is_available():
        reason = "no CUDA device: the reference PyTorch ops run"
    elif problem is not None:
        reason = f"the compiled CUDA ops cannot be built ({problem}): the reference PyTorch ops run"
    else:
        reason = ("a CUDA device is present: the compiled ops are built (or taken from the cache) and loaded on the "
                  "first call with a CUDA tensor; until then nothing compiled has run")
    return {"backend": "ref", "reason": reason, "extension": extension, "cache_key": key, "selfcheck": selfcheck}


# ------------------------------------------------------------------------------------- calls into the operators

def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Sequence[int], down: Sequence[int],
              padding: Sequence[int], flip_filter: bool, gain: float) -> torch.Tensor:
    """The compiled upfirdn2d with resolved arguments: up=(ux, uy), down=(dx, dy), padding=(px0, px1, py0, py1);
    f 2-D, 1-D (separable: applied along x, then along y) or None (a single unit tap)."""
    (up_x, up_y), (down_x, down_y) = up, down
    pad_x0, pad_x1, pad_y0, pad_y1 = padding
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    if f.requires_grad and torch.is_grad_enabled():
        raise ValueError("upfirdn2d: the compiled op does not differentiate the filter, but f requires grad; "
                         "detach f or use impl='ref'")
    op = torch.ops.translate_ops.upfirdn2d
    if f.ndim == 1:
        x = op(x, f.unsqueeze(0), up_x, 1, down_x, 1, pad_x0, pad_x1, 0, 0, flip_filter, float(gain))
        return op(x, f.unsqueeze(1), 1, up_y, 1, down_y, 0, 0, pad_y0, pad_y1, flip_filter, 1.0)
    return op(x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip_filter, float(gain))


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
             clamp: float) -> torch.Tensor:
    """The compiled bias_act with resolved arguments (clamp < 0: none). x and b are promoted to a common dtype, as
    x + b is on the reference path."""
    if b is not None and b.dtype != x.dtype:
        dtype = torch.promote_types(x.dtype, b.dtype)
        x, b = x.to(dtype), b.to(dtype)
    return torch.ops.translate_ops.bias_act(x, b, dim, act, float(alpha), float(gain), float(clamp))


def has_op(name: str) -> bool:
    """Whether the loaded library registers translate_ops::<name> (an op newer than a cached build may be missing)."""
    return hasattr(torch.ops.translate_ops, name)


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], b: Optional[torch.Tensor],
                   up: Union[int, Sequence[int]], down: Union[int, Sequence[int]], padding: Sequence[int],
                   gain: float, slope: float, clamp: Optional[float], flip_filter: bool) -> torch.Tensor:
    """The compiled filtered_lrelu (one fused pass per output tile) with resolved arguments: fu, fd 1-D
    (separable), 2-D or None (identity); b (C,) or None; up, down an int or (x, y); padding (px0, px1, py0, py1);
    clamp None (or < 0) for none. x and b are promoted to a common dtype, as x + b is on the reference path."""
    (up_x, up_y), (down_x, down_y) = _xy(up), _xy(down)
    pad_x0, pad_x1, pad_y0, pad_y1 = padding
    fu, fd = _unit_filter(fu, x), _unit_filter(fd, x)
    if (fu.requires_grad or fd.requires_grad) and torch.is_grad_enabled():
        raise ValueError("filtered_lrelu: the compiled op does not differentiate the filters, but fu or fd requires "
                         "grad; detach them or use impl='ref'")
    if b is not None and b.dtype != x.dtype:
        dtype = torch.promote_types(x.dtype, b.dtype)
        x, b = x.to(dtype), b.to(dtype)
    return torch.ops.translate_ops.filtered_lrelu(x, fu, fd, b, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0,
                                                  pad_y1, float(gain), float(slope),
                                                  -1.0 if clamp is None else float(clamp), bool(flip_filter))


def _xy(v: Union[int, Sequence[int]]) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _unit_filter(f: Optional[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """f, or for None the identity: one separable unit tap."""
    return torch.ones(1, dtype=torch.float32, device=x.device) if f is None else f


# ------------------------------------------------------------------------- fake implementations (shapes only)

def _upfirdn2d_fake(x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip_filter, gain):
    torch._check(x.ndim == 4, lambda: f"upfirdn2d: expected x of shape (N, C, H, W), got {tuple(x.shape)}")
    torch._check(f.ndim == 2, lambda: f"upfirdn2d: expected a 2-D filter (fh, fw), got {tuple(f.shape)}")
    out_h = (x.shape[2] * up_y + pad_y0 + pad_y1 - f.shape[0]) // down_y + 1
    out_w = (x.shape[3] * up_x + pad_x0 + pad_x1 - f.shape[1]) // down_x + 1
    return x.new_empty((x.shape[0], x.shape[1], out_h, out_w))


def _filtered_lrelu_size(x, fu, fd, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1):
    """(out_h, out_w): the down filter's positions over the upsampled image (in * up + pads - fu + 1 samples)."""
    mid_w = x.shape[3] * up_x + pad_x0 + pad_x1 - fu.shape[-1] + 1
    mid_h = x.shape[2] * up_y + pad_y0 + pad_y1 - fu.shape[0] + 1
    return (mid_h - fd.shape[0]) // down_y + 1, (mid_w - fd.shape[-1]) // down_x + 1


def _filtered_lrelu_fake(x, fu, fd, b, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, gain, slope,
                         clamp, flip_filter):
    torch._check(x.ndim == 4, lambda: f"filtered_lrelu: expected x of shape (N, C, H, W), got {tuple(x.shape)}")
    torch._check(fu.ndim in (1, 2) and fd.ndim in (1, 2),
                 lambda: f"filtered_lrelu: expected 1-D or 2-D filters, got {tuple(fu.shape)}, {tuple(fd.shape)}")
    out_h, out_w = _filtered_lrelu_size(x, fu, fd, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1)
    return x.new_empty((x.shape[0], x.shape[1], out_h, out_w))


def _filtered_lrelu_grad_fake(dy, x, fu, fd, b, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, gain,
                              slope, clamp, flip_filter):
    return x.new_empty(x.shape)


def _bias_act_fake(x, b, dim, act, alpha, gain, clamp):
    return x.new_empty(x.shape)


def _bias_act_grad_fake(dy, x, b, dim, act, alpha, gain, clamp, order):
    return x.new_empty(x.shape)


# ------------------------------------------------------------------------------------------- autograd formulas

def _upfirdn2d_setup(ctx, inputs, output):
    x, f, up_x, up_y, down_x, down_y, pad_x0, _, pad_y0, _, flip_filter, gain = inputs
    ctx.save_for_backward(f)
    ctx.args = (up_x, up_y, down_x, down_y, pad_x0, pad_y0, flip_filter, gain)
    ctx.in_size = (x.shape[2], x.shape[3])
    ctx.out_size = (output.shape[2], output.shape[3])


def _upfirdn2d_backward(ctx, dy):
    """dx is upfirdn2d of dy with up and down swapped and the filter flipped: y[o] = sum_b xp[o * down + b] k[b]
    puts x[i] under tap b = i * up + pad0 - o * down, which upsampling dy by `down`, padding it by filt - 1 - pad0
    and decimating by `up` visits in reverse tap order. The trailing padding makes the result x's size."""
    if ctx.needs_input_grad[1]:
        raise RuntimeError("translate_ops::upfirdn2d does not differentiate the filter f; use impl='ref'")
    (f,) = ctx.saved_tensors
    up_x, up_y, down_x, down_y, pad_x0, pad_y0, flip_filter, gain = ctx.args
    (in_h, in_w), (out_h, out_w) = ctx.in_size, ctx.out_size
    filt_h, filt_w = f.shape
    dx = torch.ops.translate_ops.upfirdn2d(
        dy, f, down_x, down_y, up_x, up_y,
        filt_w - 1 - pad_x0, in_w * up_x - out_w * down_x + pad_x0 - up_x + 1,
        filt_h - 1 - pad_y0, in_h * up_y - out_h * down_y + pad_y0 - up_y + 1,
        not flip_filter, gain)
    return (dx,) + (None,) * 11


def _sum_to_bias(dz: torch.Tensor, dim: int) -> torch.Tensor:
    dims = [d for d in range(dz.ndim) if d != dim]
    return dz.sum(dims) if dims else dz  # (sum over an empty list would reduce everything)


def _bias_act_setup(ctx, inputs, output):
    x, b, dim, act, alpha, gain, clamp = inputs
    ctx.save_for_backward(x, b)
    ctx.args = (dim, act, alpha, gain, clamp)


def _bias_act_backward(ctx, dy):
    x, b = ctx.saved_tensors
    dim, act, alpha, gain, clamp = ctx.args
    if act == "linear" and clamp < 0:  # a constant derivative: the gradient does not depend on x or b
        dz = dy * gain if gain != 1 else dy
    else:
        dz = torch.ops.translate_ops.bias_act_grad(dy, x, b, *ctx.args, 1)
    db = _sum_to_bias(dz, dim) if b is not None and ctx.needs_input_grad[1] else None
    return dz if ctx.needs_input_grad[0] else None, db, None, None, None, None, None


def _bias_act_grad_setup(ctx, inputs, output):
    dy, x, b, dim, act, alpha, gain, clamp, order = inputs
    ctx.save_for_backward(dy, x, b)
    ctx.args = (dim, act, alpha, gain, clamp)
    ctx.order = order


def _bias_act_grad_backward(ctx, g):
    """bias_act_grad(dy, x, b, k) = dy * gain * a^(k)(x + b) * mask: linear in dy (the same op again), and its
    derivative in x and b is the op of order k + 1 applied to g * dy."""
    dy, x, b = ctx.saved_tensors
    op = torch.ops.translate_ops.bias_act_grad
    d_dy = op(g, x, b, *ctx.args, ctx.order) if ctx.needs_input_grad[0] else None
    d_x = d_b = None
    if ctx.needs_input_grad[1] or (b is not None and ctx.needs_input_grad[2]):
        if ctx.order >= MAX_GRAD_ORDER:
            raise NotImplementedError(f"translate_ops::bias_act is differentiable {MAX_GRAD_ORDER} times; for "
                                      "higher derivatives use impl='ref'")
        dz = op(g * dy, x, b, *ctx.args, ctx.order + 1)
        d_x = dz if ctx.needs_input_grad[1] else None
        d_b = _sum_to_bias(dz, ctx.args[0]) if b is not None and ctx.needs_input_grad[2] else None
    return d_dy, d_x, d_b, None, None, None, None, None, None


def _filtered_lrelu_setup(ctx, inputs, output):
    x, fu, fd, b = inputs[:4]
    ctx.save_for_backward(x, fu, fd, b)
    ctx.args = inputs[4:]


def _filtered_lrelu_backward(ctx, dy):
    """dx by the fused gradient kernel (filtered_lrelu_grad); db is its sum over (n, h, w)."""
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        raise RuntimeError("translate_ops::filtered_lrelu does not differentiate the filters fu, fd; use impl='ref'")
    x, fu, fd, b = ctx.saved_tensors
    dx = torch.ops.translate_ops.filtered_lrelu_grad(dy, x, fu, fd, b, *ctx.args)
    db = dx.sum([0, 2, 3]) if b is not None and ctx.needs_input_grad[3] else None
    return (dx if ctx.needs_input_grad[0] else None, None, None, db) + (None,) * 12


def _filtered_lrelu_grad_setup(ctx, inputs, output):
    dy, x, fu, fd, b = inputs[:5]
    ctx.save_for_backward(x, fu, fd, b)
    ctx.args = inputs[5:]


def _filtered_lrelu_grad_backward(ctx, g):
    """The gradient dx = U^T (m(u) * D^T dy), with u = U(x + b) and m = gain * lrelu' * the clamp's mask, is linear
    in dy and piecewise constant in x and b (their derivative is zero almost everywhere, as the reference's is). Its
    derivative in dy, applied to g, is D (m(u) * U g): here by the compiled upfirdn2d and bias_act_grad, each with
    its own autograd formula. u is recomputed at the upsampled rate (this is the double-backward path only)."""
    if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
        raise RuntimeError("translate_ops::filtered_lrelu does not differentiate the filters fu, fd; use impl='ref'")
    x, fu, fd, b = ctx.saved_tensors
    up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, gain, slope, clamp, flip_filter = ctx.args
    d_dy = None
    if ctx.needs_input_grad[0]:
        up, pad = (up_x, up_y), (pad_x0, pad_x1, pad_y0, pad_y1)
        z = x if b is None else x + b.view(1, -1, 1, 1)
        u = upfirdn2d(z, fu, up, (1, 1), pad, flip_filter, up_x * up_y)
        ug = upfirdn2d(g, fu, up, (1, 1), pad, flip_filter, up_x * up_y)
        du = torch.ops.translate_ops.bias_act_grad(ug, u, None, 1, "lrelu", slope, gain, clamp, 1)
        d_dy = upfirdn2d(du, fd, (1, 1), (down_x, down_y), (0, 0, 0, 0), flip_filter, 1.0)
    return (d_dy,) + (None,) * 16


def _register_python_side() -> None:
    """Once per process, after the library is loaded (registration needs the operators' schemas)."""
    if _state["registered"]:
        return
    torch.library.register_fake("translate_ops::upfirdn2d", _upfirdn2d_fake)
    torch.library.register_fake("translate_ops::bias_act", _bias_act_fake)
    torch.library.register_fake("translate_ops::bias_act_grad", _bias_act_grad_fake)
    torch.library.register_fake("translate_ops::filtered_lrelu", _filtered_lrelu_fake)
    torch.library.register_fake("translate_ops::filtered_lrelu_grad", _filtered_lrelu_grad_fake)
    torch.library.register_autograd("translate_ops::upfirdn2d", _upfirdn2d_backward, setup_context=_upfirdn2d_setup)
    torch.library.register_autograd("translate_ops::bias_act", _bias_act_backward, setup_context=_bias_act_setup)
    torch.library.register_autograd("translate_ops::bias_act_grad", _bias_act_grad_backward,
                                    setup_context=_bias_act_grad_setup)
    torch.library.register_autograd("translate_ops::filtered_lrelu", _filtered_lrelu_backward,
                                    setup_context=_filtered_lrelu_setup)
    torch.library.register_autograd("translate_ops::filtered_lrelu_grad", _filtered_lrelu_grad_backward,
                                    setup_context=_filtered_lrelu_grad_setup)
    _state["registered"] = True


# The library names this module as the home of its Python registrations (set_python_module in ops.cpp): when it was
# loaded by other means, torch imports this module, which registers them here.
if hasattr(torch.ops.translate_ops, "bias_act_grad"):
    _register_python_side()
