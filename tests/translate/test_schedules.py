import pytest
import torch

from translate.schedules import build_scheduler


def lrs(policy, epochs, **kw):
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = build_scheduler(opt, policy, **kw)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, sched


def test_linear_constant_then_decay_to_zero():
    out, _ = lrs("linear", 8, n_epochs=3, n_epochs_decay=4)
    assert out[:3] == [1.0, 1.0, 1.0]
    assert all(a > b for a, b in zip(out[2:7], out[3:7]))
    assert out[6] == pytest.approx(1 / 5)


def test_step_and_cosine():
    out, _ = lrs("step", 5, n_epochs=1, n_epochs_decay=1, lr_decay_iters=2)
    assert out == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    out, _ = lrs("cosine", 5, n_epochs=4, n_epochs_decay=0)
    assert out[0] == 1.0 and out[4] == pytest.approx(0.0, abs=1e-9)


def test_state_round_trips_through_weights_only_load(tmp_path):
    _, sched = lrs("linear", 5, n_epochs=2, n_epochs_decay=3)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["last_epoch"] == 5


def test_unknown_policy():
    with pytest.raises(ValueError, match="lr_policy"):
        lrs("plateau", 1, n_epochs=1, n_epochs_decay=1)
