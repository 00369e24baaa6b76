"""The self-check of the compiled ops (priors/ops/_selfcheck.py, wired in priors/ops/_backend.py), on the CPU.

Without a GPU the compiled path is simulated: the CPU counts as a device of the compiled ops, loading is a no-op and
the compiled calls (`_backend.upfirdn2d`, `_backend.bias_act`) are replaced by Python functions, right or planted
wrong. tests/priors/test_cuda_ops.py runs the real self-check on a GPU.
"""
import re
import warnings
from pathlib import Path

import pytest
import torch

from priors.ops import _backend, _selfcheck, backend, bias_act, setup_filter, upfirdn2d
from priors.ops.filtered_lrelu import _filtered_lrelu_ref
from priors.ops.upfirdn2d import _upfirdn2d_ref

CSRC = Path(__file__).resolve().parents[2] / "csrc"
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def _right_upfirdn2d(x, f, up, down, padding, flip_filter, gain):
    return _upfirdn2d_ref(x, f, tuple(up), tuple(down), tuple(padding), flip_filter, gain)


def _right_bias_act(x, b, dim, act, alpha, gain, clamp):
    return bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=None if clamp < 0 else clamp, impl="ref")


def _right_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    clamp = None if clamp is None or clamp < 0 else clamp
    return _filtered_lrelu_ref(x, fu, fd, b, up, down, tuple(padding), gain, slope, clamp, flip_filter)


def _plane_skipped(x, f, up, down, padding, flip_filter, gain):
    """A kernel whose plane loop stops one plane short: the last channel stays 0."""
    y = _right_upfirdn2d(x, f, up, down, padding, flip_filter, gain)
    return torch.cat([y[:, :-1], torch.zeros_like(y[:, -1:])], dim=1)


def _gradient_doubled(x, b, dim, act, alpha, gain, clamp):
    """A kernel whose forward is right and whose gradient in x is twice too large."""
    y = _right_bias_act(x, b, dim, act, alpha, gain, clamp)
    return y + (y - y.detach())


def _launch_fails(x, b, dim, act, alpha, gain, clamp):
    raise RuntimeError("CUDA error: too many resources requested for launch")


@pytest.fixture
def simulated(monkeypatch):
    """The CPU as a device of the compiled ops, in a fresh process state; returns a dict counting compiled calls and
    a function that installs the compiled implementations (right by default)."""
    monkeypatch.setattr(_backend, "_state", {"error": None, "warned": False, "registered": True, "ready": set(),
                                             "checked": set(), "checking": False})
    monkeypatch.setattr(_backend, "_compiled_device", lambda x: True)
    monkeypatch.setattr(_backend, "load_extension", lambda **kw: {})
    monkeypatch.setattr(_backend, "has_op", lambda name: True)
    monkeypatch.delenv(_selfcheck.ENV, raising=False)
    calls = {"upfirdn2d": 0, "bias_act": 0, "filtered_lrelu": 0}

    def install(upfirdn2d_impl=_right_upfirdn2d, bias_act_impl=_right_bias_act):
        def counted(name, fn):
            def wrapper(*args, **kwargs):
                if not _backend._state["checking"]:
                    calls[name] += 1
                return fn(*args, **kwargs)
            return wrapper
        monkeypatch.setattr(_backend, "upfirdn2d", counted("upfirdn2d", upfirdn2d_impl))
        monkeypatch.setattr(_backend, "bias_act", counted("bias_act", bias_act_impl))
        monkeypatch.setattr(_backend, "filtered_lrelu", counted("filtered_lrelu", _right_filtered_lrelu))
        return calls

    return install


def _call_both(dtype=torch.float32):
    x = torch.randn(2, 3, 8, 8).to(dtype)
    up = upfirdn2d(x, setup_filter([1, 3, 3, 1]), up=2, padding=(2, 1))
    act = bias_act(x, torch.randn(3).to(dtype), act="lrelu")
    return x, up, act


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_probe_agrees_for_the_reference_path_in_every_dtype(dtype):
    """The probes run, and their tolerances leave room for a correct implementation's rounding in each dtype (the
    reference path in that dtype against itself in float64)."""
    assert _selfcheck.run(torch.device("cpu"), dtype, impl="ref") == []


def test_every_compiled_op_has_probes():
    """Each operator csrc/ registers (its *_grad helpers are checked through their op's backward) has an entry in
    PROBES, so a new op cannot skip the self-check."""
    defs = set()
    for path in CSRC.glob("*.c*"):
        defs |= set(re.findall(r'm\.def\(\s*"(\w+)\(', path.read_text()))
    assert defs, "no operator definitions found in csrc/"
    assert {d for d in defs if not d.endswith("_grad")} <= set(_selfcheck.PROBES)
    for op, probes in _selfcheck.PROBES.items():
        assert probes(), op


def test_right_compiled_ops_pass_and_are_used_per_dtype_in_use(simulated):
    calls = simulated()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _call_both(torch.float32)
    assert calls == {"upfirdn2d": 1, "bias_act": 1, "filtered_lrelu": 0}  # the compiled path ran once the check passed
    assert _backend._state["checked"] == {("cpu", torch.float32)}
    _call_both(torch.bfloat16)
    assert _backend._state["checked"] == {("cpu", torch.float32), ("cpu", torch.bfloat16)}
    assert _backend._state["error"] is None and calls == {"upfirdn2d": 2, "bias_act": 2, "filtered_lrelu": 0}
    assert backend()["selfcheck"] == "passed (bfloat16 on cpu, float32 on cpu)"


def test_a_skipped_plane_warns_naming_op_and_probe_and_the_reference_path_runs_from_then_on(simulated):
    calls = simulated(upfirdn2d_impl=_plane_skipped)
    x = torch.randn(2, 3, 8, 8)
    f = setup_filter([1, 3, 3, 1])
    with pytest.warns(RuntimeWarning, match=r"self-check .* failed: upfirdn2d probe 'up 2, 4x4 filter, padding "
                                            r"\(2, 1\)' \(float32 on cpu\): forward differs"):
        y = upfirdn2d(x, f, up=2, padding=(2, 1))
    torch.testing.assert_close(y, upfirdn2d(x, f, up=2, padding=(2, 1), impl="ref"), atol=0, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once
        _call_both(torch.float32)
        _call_both(torch.float16)
    assert calls == {"upfirdn2d": 0, "bias_act": 0, "filtered_lrelu": 0}  # every op falls back, also the one that passed
    info = backend()
    assert info["backend"] == "ref" and info["selfcheck"].startswith("failed: upfirdn2d probe")
    assert "self-check" in info["reason"]
    with pytest.raises(RuntimeError, match="impl='cuda'.*self-check"):
        upfirdn2d(x, f, up=2, padding=(2, 1), impl="cuda")


def test_a_wrong_gradient_is_caught_by_the_backward_probe(simulated):
    simulated(bias_act_impl=_gradient_doubled)
    with pytest.warns(RuntimeWarning, match=r"bias_act probe 'lrelu, bias along dim 1' \(float16 on cpu\): "
                                            r"gradient of operand 0 differs"):
        _call_both(torch.float16)


def test_a_failing_launch_is_a_failure(simulated):
    simulated(bias_act_impl=_launch_fails)
    with pytest.warns(RuntimeWarning, match="bias_act probe 'lrelu, bias along dim 1' .* raised RuntimeError: CUDA "
                                            "error: too many resources"):
        reason = _backend.check_device(torch.device("cpu"), [torch.float32])
    assert reason.endswith(f"(and {len(_selfcheck.PROBES['bias_act']()) - 1} more)")


def test_selfcheck_0_skips_it(simulated, monkeypatch):
    monkeypatch.setenv(_selfcheck.ENV, "0")
    calls = simulated(upfirdn2d_impl=_plane_skipped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, y, _ = _call_both()
    assert calls["upfirdn2d"] == 1 and not bool(y[:, -1].any())  # the planted bug went through, unchecked
    assert backend()["selfcheck"] == f"skipped ({_selfcheck.ENV}=0)"


def test_the_check_runs_under_no_grad_inference_mode_and_autocast(simulated):
    calls = simulated(bias_act_impl=_gradient_doubled)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), pytest.warns(RuntimeWarning,
                                                                                          match="gradient"):
        bias_act(torch.randn(2, 3), torch.randn(3), act="lrelu")
    assert calls["bias_act"] == 0


def test_doctor_reports_the_selfcheck(simulated):
    from translate.tools.doctor import ops_report

    simulated()
    _call_both()
    assert ops_report()[1] == "ops self-check    passed (float32 on cpu)"



def test_the_check_computes_real_values_when_the_first_call_is_traced_with_fake_tensors(simulated):
    """torch.export and FakeTensorMode trace with fake tensors: the probes still run on real ones (a planted bug is
    still seen, a right implementation still passes)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    simulated(bias_act_impl=_gradient_doubled)
    with FakeTensorMode(allow_non_fake_inputs=True), pytest.warns(RuntimeWarning, match="gradient of operand 0"):
        bias_act(torch.randn(2, 3), torch.randn(3), act="lrelu")
    assert _backend._state["error"] is not None
