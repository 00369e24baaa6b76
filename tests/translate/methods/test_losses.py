import pytest
import torch

from translate.methods.losses import GAN_MODES, d_loss, g_loss, gradient_penalty


def test_vanilla_is_bce_with_logits():
    pred = torch.tensor([[0.0, 2.0]])
    assert torch.allclose(d_loss(pred, True, "vanilla"), torch.nn.functional.softplus(-pred).mean())
    assert torch.allclose(d_loss(pred, False, "vanilla"), torch.nn.functional.softplus(pred).mean())


def test_lsgan_hinge_wgan_values():
    pred = torch.tensor([0.5, -2.0])
    assert d_loss(pred, True, "lsgan").item() == pytest.approx(((0.5 - 1) ** 2 + 9) / 2)
    assert d_loss(pred, True, "hinge").item() == pytest.approx((0.5 + 3.0) / 2)
    assert d_loss(pred, False, "hinge").item() == pytest.approx((1.5 + 0.0) / 2)
    assert d_loss(pred, True, "wgangp").item() == pytest.approx(0.75)
    assert g_loss(pred, "hinge").item() == pytest.approx(0.75)


@pytest.mark.parametrize("mode", GAN_MODES)
def test_generator_loss_falls_as_d_is_fooled(mode):
    assert g_loss(torch.full((4,), 3.0), mode) < g_loss(torch.full((4,), -3.0), mode)


def test_unknown_mode():
    with pytest.raises(ValueError, match="gan_mode"):
        d_loss(torch.zeros(1), True, "wasserstein")


def test_gradient_penalty_is_zero_for_unit_slope_and_positive_otherwise():
    torch.manual_seed(0)
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    n = real[0].numel()
    unit = lambda x: x.flatten(1).sum(1) / n ** 0.5  # noqa: E731  ||grad|| = 1 everywhere
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-6)
    steep = lambda x: 3 * x.flatten(1).sum(1) / n ** 0.5  # noqa: E731  ||grad|| = 3
    assert gradient_penalty(steep, real, fake).item() == pytest.approx(4.0, rel=1e-4)
    w = torch.ones(1, requires_grad=True)
    gp = gradient_penalty(lambda x: w * steep(x), real, fake)
    gp.backward()  # differentiable w.r.t. D's parameters (double backward)
    assert w.grad is not None and w.grad.abs().item() > 0
