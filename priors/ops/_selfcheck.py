"""The self-check of the compiled ops on the device: small probes run through impl="cuda" and the reference path.

The first time the compiled ops are used on a CUDA device for a dtype, `_backend` runs every probe of `PROBES` on
that device in that dtype: forward, backward (a fixed cotangent) and, where a probe asks for it, double backward.
The reference path runs on the same device in float64 from the same (already rounded) inputs, so the tolerance only
has to cover the candidate's own rounding. A result beyond `TOLERANCE`, or a probe that raises, is a failure naming
the op, the probe and the dtype; `_backend` then warns and runs the reference path for the rest of the process.
$TRANSLATE_OPS_SELFCHECK=0 skips the check.

A new compiled op adds its probes to `PROBES` (one entry: op name -> list of `Probe`); nothing else changes. The
package's __init__ registers `run` with _backend (which cannot import this module: the ops import _backend).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from priors.ops import _backend
from priors.ops.bias_act import bias_act
from priors.ops.filtered_lrelu import filtered_lrelu
from priors.ops.upfirdn2d import setup_filter, upfirdn2d

ENV = _backend.SELFCHECK_ENV  # "0" skips the self-check
enabled = _backend.self_check_enabled
# |candidate - reference| <= atol + rtol * |reference|, per dtype of the candidate (its rounding, nothing more)
TOLERANCE = {torch.float64: (1e-9, 1e-9), torch.float32: (1e-4, 1e-4), torch.float16: (1e-2, 1e-2),
             torch.bfloat16: (6e-2, 6e-2)}
SEED = 2026


@dataclass(frozen=True)
class Probe:
    name: str  # what it exercises, in a few words
    inputs: Callable[[torch.Generator], Sequence[torch.Tensor]]  # CPU float64 inputs; the runner moves and casts them
    call: Callable[..., torch.Tensor]  # call(*inputs, impl=...) -> output
    grad_order: int = 1  # 1: forward and backward; 2: also the gradient of a gradient (R1, path length)
    constant: Sequence[bool] = ()  # per input: True = a filter (kept float32, not differentiated), False = an operand


# ----------------------------------------------------------------------------------------------------- probes

def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _odd_sixteenths(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Values (2k + 1) / 16 in [-2, 2): exact in every float dtype, never 0 after adding a multiple of 1/8, and, with
    the clamp chosen below, never on a clamp's edge, so that a derivative's branch is the same in every dtype."""
    return (2 * torch.randint(-16, 16, shape, generator=g, dtype=torch.float64) + 1) / 16


def _eighths(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randint(-4, 4, shape, generator=g, dtype=torch.float64) / 8


def _upfirdn2d_probes() -> List[Probe]:
    def filt(taps, separable=False):
        return lambda g: setup_filter(taps, separable=separable).double()

    return [
        Probe("up 2, 4x4 filter, padding (2, 1)",
              lambda g: (_randn(g, 2, 3, 7, 9), filt([1, 3, 3, 1])(g)),
              lambda x, f, impl: upfirdn2d(x, f, up=2, padding=(2, 1), gain=4, impl=impl), constant=(False, True)),
        Probe("down 2, separable 8 taps, channels_last",
              lambda g: (_randn(g, 2, 4, 12, 10).to(memory_format=torch.channels_last),
                         filt([1, 7, 21, 35, 35, 21, 7, 1], separable=True)(g)),
              lambda x, f, impl: upfirdn2d(x, f, down=2, padding=3, impl=impl), constant=(False, True)),
        Probe("up (1, 2), down (2, 1), crop, flip, gain",
              lambda g: (_randn(g, 1, 2, 8, 8), _randn(g, 3, 5).float().double()),
              lambda x, f, impl: upfirdn2d(x, f, up=(1, 2), down=(2, 1), padding=(2, -1, -1, 3), flip_filter=True,
                                           gain=0.5, impl=impl), constant=(False, True)),
    ]


def _bias_act_probes() -> List[Probe]:
    return [
        Probe("lrelu, bias along dim 1",
              lambda g: (_odd_sixteenths(g, 2, 5, 3, 4), _eighths(g, 5)),
              lambda x, b, impl: bias_act(x, b, act="lrelu", impl=impl)),
        Probe("lrelu, clamp 1, double backward",  # as in the synthesis layers under R1 / path-length regularisation
              lambda g: (_odd_sixteenths(g, 3, 6), _eighths(g, 6)),
              lambda x, b, impl: bias_act(x, b, act="lrelu", clamp=1.0, impl=impl), grad_order=2),
        Probe("tanh, bias along dim 0, gain 2",
              lambda g: (_randn(g, 4, 3, 2), _randn(g, 4)),
              lambda x, b, impl: bias_act(x, b, dim=0, act="tanh", gain=2.0, impl=impl), grad_order=2),
    ]


def _filtered_lrelu_probes() -> List[Probe]:
    """x + b is an odd multiple of 1/16 and the up filter (when there is one) repeats pixels, so that no activation
    lies on the leaky ReLU's kink or the clamp's edge in any dtype: the derivative's branch is the same everywhere."""
    def filt(taps, separable=True):
        return lambda g: setup_filter(taps, separable=separable).double()

    return [
        Probe("up 1, down 2, separable 4 taps, bias",
              lambda g: (_odd_sixteenths(g, 2, 3, 9, 8), _eighths(g, 3), filt([1, 3, 3, 1])(g)),
              lambda x, b, fd, impl: filtered_lrelu(x, fd=fd, b=b, down=2, padding=1, impl=impl),
              constant=(False, False, True)),
        Probe("up 2 (repeat), down 2, 2-D 5x5 filter, clamp 1, channels_last",
              lambda g: (_odd_sixteenths(g, 1, 4, 6, 7).to(memory_format=torch.channels_last), _eighths(g, 4),
                         filt([1, 1])(g), setup_filter([1, 4, 6, 4, 1]).double()),
              lambda x, b, fu, fd, impl: filtered_lrelu(x, fu=fu, fd=fd, b=b, up=2, down=2, padding=(1, 2, 2, 1),
                                                        clamp=1.0, impl=impl),
              constant=(False, False, True, True)),
    ]


# op name -> its probes (built when the check runs)
PROBES: Dict[str, Callable[[], List[Probe]]] = {
    "upfirdn2d": _upfirdn2d_probes,
    "bias_act": _bias_act_probes,
    "filtered_lrelu": _filtered_lrelu_probes,
}


# ----------------------------------------------------------------------------------------------------- running

def _results(probe: Probe, inputs: Sequence[torch.Tensor], constant: Sequence[bool], impl: str,
             dtype: torch.dtype) -> List[Tuple[str, torch.Tensor]]:
    """(what, tensor) for the forward output and the gradients (first, and second if asked) of every operand. The
    cotangents are rounded to `dtype`, the probe's, on both paths."""
    inputs = [t if c else t.detach().requires_grad_(True) for t, c in zip(inputs, constant)]
    leaves = [t for t, c in zip(inputs, constant) if not c]
    y = probe.call(*inputs, impl=impl)
    g = torch.Generator().manual_seed(SEED + 1)

    def cotangent(like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=g, dtype=torch.float64).to(dtype).to(like.device, like.dtype)

    out = [("forward", y)]
    grads = torch.autograd.grad(y, leaves, cotangent(y), create_graph=probe.grad_order > 1)
    out += [(f"gradient of operand {i}", d) for i, d in enumerate(grads)]
    if probe.grad_order > 1:
        second = torch.autograd.grad(grads[0], leaves, cotangent(grads[0]), allow_unused=True)
        out += [(f"second derivative through operand {i}", d) for i, d in enumerate(second) if d is not None]
    return out


def run_probe(op: str, probe: Probe, device: torch.device, dtype: torch.dtype, impl: str = "cuda") -> Optional[str]:
    """None when `impl` agrees with the reference path on this probe, else what differed (naming op and probe)."""
    where = f"{op} probe {probe.name!r} ({str(dtype).replace('torch.', '')} on {device})"
    atol, rtol = TOLERANCE.get(dtype, TOLERANCE[torch.float32])
    base = probe.inputs(torch.Generator().manual_seed(SEED))
    constant = list(probe.constant) + [False] * (len(base) - len(probe.constant))
    candidate = [t.to(device=device, dtype=torch.float32 if c else dtype) for t, c in zip(base, constant)]
    reference = [t.to(dtype=torch.float64) for t in candidate]  # the same rounded values, exactly
    try:
        got = _results(probe, candidate, constant, impl, dtype)
    except Exception as e:  # a kernel that fails to launch is as wrong as one that computes garbage
        return f"{where}: impl={impl!r} raised {type(e).__name__}: {e}"
    want = _results(probe, reference, constant, "ref", dtype)
    for (what, a), (_, b) in zip(got, want):
        a, b = a.detach(), b.detach()
        if a.shape != b.shape:
            return f"{where}: {what} has shape {tuple(a.shape)}, the reference path {tuple(b.shape)}"
        err = (a.double() - b).abs()
        bound = atol + rtol * b.abs()
        if not bool(torch.isfinite(a).all()) or bool((err > bound).any()):
            worst = float(torch.nan_to_num(err - bound, nan=math.inf).max())
            return (f"{where}: {what} differs from the reference path (max |difference| "
                    f"{float(torch.nan_to_num(err, nan=math.inf).max()):.3g}, {worst:.3g} beyond the tolerance "
                    f"atol={atol:g}, rtol={rtol:g})")
    return None


def run(device: torch.device, dtype: torch.dtype, impl: str = "cuda",
        ops: Optional[Sequence[str]] = None) -> List[str]:
    """Runs every probe of PROBES (or of `ops`) on device in dtype; returns the failures (empty: all agree).

    Gradients are needed even where the caller runs under no_grad or inference_mode, and the probes' dtypes must not
    be changed by an autocast region, so all three are switched off here."""
    failures = []
    autocast = torch.autocast(device.type, enabled=False) if device.type in ("cuda", "cpu") else _null()
    with torch.inference_mode(False), torch.enable_grad(), autocast:
        for op in ops if ops is not None else PROBES:
            for probe in PROBES[op]():
                failure = run_probe(op, probe, device, dtype, impl)
                if failure is not None:
                    failures.append(failure)
    return failures


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
