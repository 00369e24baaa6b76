import math

import pytest
import torch

from translate.methods.registry import METHODS
from translate.methods.schedules import LR_POLICIES, EpochSchedule, build_scheduler, schedule_epochs


def lrs(policy, epochs, **kw):
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = build_scheduler(opt, policy, **kw)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, sched


def reference_lrs(policy, epochs, n_epochs, n_epochs_decay, lr_decay_iters=50):
    """The reference's schedule, written from its rules: epoch e (from 1) trains at the lr set at its start."""
    out = []
    for e in range(1, epochs + 1):
        if policy == "linear":
            out.append(1.0 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1))
        elif policy == "step":
            out.append(0.1 ** (e // lr_decay_iters))
        else:
            out.append((1 + math.cos(math.pi * e / n_epochs)) / 2)
    return out


def test_linear_constant_then_decay_to_zero_as_the_reference():
    out, _ = lrs("linear", 7, n_epochs=3, n_epochs_decay=4)
    assert out == pytest.approx([1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0])  # as the reference: the last epoch at 0
    assert out == pytest.approx(reference_lrs("linear", 7, 3, 4))
    out, _ = lrs("linear", 200, n_epochs=100, n_epochs_decay=100)
    assert out[98] == 1.0 and out[99] == pytest.approx(100 / 101) and out[199] == 0.0


def test_step_and_cosine_as_the_reference():
    out, _ = lrs("step", 5, n_epochs=1, n_epochs_decay=1, lr_decay_iters=2)
    assert out == pytest.approx([1, 0.1, 0.1, 0.01, 0.01]) == reference_lrs("step", 5, 1, 1, 2)
    out, _ = lrs("cosine", 4, n_epochs=4, n_epochs_decay=0)
    assert out == pytest.approx(reference_lrs("cosine", 4, 4, 0)) and out[3] == pytest.approx(0.0, abs=1e-9)
    out, _ = lrs("constant", 3, n_epochs=1, n_epochs_decay=1)
    assert out == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("policy", LR_POLICIES)
def test_no_policy_goes_negative_or_rises_again_after_its_end(policy):
    """Trained (or resumed) past the schedule, a run holds the schedule's end value: before, linear went on below
    zero (-2.1e-4 at epoch 17 of the demo trained for 20 epochs) and cosine rose again."""
    n_epochs, n_epochs_decay = 4, 3
    out, _ = lrs(policy, 30, n_epochs=n_epochs, n_epochs_decay=n_epochs_decay, lr_decay_iters=2)
    assert min(out) >= 0.0
    end = schedule_epochs(policy, n_epochs, n_epochs_decay)
    if end is not None:
        assert out[end - 1] == pytest.approx(0.0, abs=1e-12)
        assert out[end - 1:] == [out[end - 1]] * (30 - end + 1)  # held
    assert all(b <= a for a, b in zip(out, out[1:]))  # never rises


def test_schedule_lengths():
    assert EpochSchedule("linear", 10, 6).schedule_epochs() == 16
    assert EpochSchedule("cosine", 10, 6).schedule_epochs() == 10
    assert EpochSchedule("step").schedule_epochs() is None and EpochSchedule("constant").schedule_epochs() is None


def test_state_round_trips_through_weights_only_load(tmp_path):
    _, sched = lrs("linear", 5, n_epochs=2, n_epochs_decay=3)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["last_epoch"] == 5


def test_unknown_policy():
    with pytest.raises(ValueError, match="lr_policy"):
        lrs("plateau", 1, n_epochs=1, n_epochs_decay=1)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_no_method_trains_at_a_negative_learning_rate(method):
    """Every method with a per-epoch schedule (pix2pix, CycleGAN) holds at 0 past it; the step-based methods
    (pSp, the StyleGAN2 prior) train at constant rates and configure no schedule at all."""
    if not issubclass(METHODS[method].config_class, EpochSchedule):
        assert method in ("psp", "stylegan2")  # a new method with a schedule must be checked here
        return
    from translate.train.config import load_config
    from translate.train.runner import build_module

    for policy in LR_POLICIES:
        cfg = load_config([], [f"method={method}", "model.netG=unet", "model.num_downs=5", "model.ngf=4", "model.ndf=4",
                               f"model.lr_policy={policy}", "model.n_epochs=2", "model.n_epochs_decay=2",
                               "model.lr_decay_iters=1"])
        optimizers, schedulers = build_module(cfg).configure_optimizers()
        seen = []
        for _ in range(12):  # three times the schedule
            seen += [g["lr"] for o in optimizers for g in o.param_groups]
            for o, s in zip(optimizers, schedulers):
                o.step()
                s.step()
        assert min(seen) >= 0.0, (method, policy)
