"""Discriminators: reference parity (golden outputs), every DISCRIMINATORS entry at tiny size, patch size."""
import pytest
import torch

from nets import DISCRIMINATORS, NLayerDiscriminator, PixelDiscriminator, build_discriminator, inference_copy

NDF = 4


@pytest.mark.parametrize("name", ["basicD_batch_in6_ndf8.pt", "basicD_instance_in3_ndf8.pt"])
def test_reference_outputs_eval_and_train_mode(golden, name):
    g = golden(name)
    c = g["config"]
    net = NLayerDiscriminator(c["input_nc"], ndf=c["ndf"], n_layers=c["n_layers_D"], norm=c["norm"])
    net.load_state_dict(g["state_dict"], strict=True)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(g["input"]), g["output"], atol=1e-5, rtol=0)
        expected_train = g.get("output_train_mode", g["output"])  # instance norm: no train/eval difference
        torch.testing.assert_close(net.train()(g["input"]), expected_train, atol=1e-5, rtol=0)


EXPECTED_SHAPE = {"basic": (2, 1, 2, 2), "n_layers": (2, 1, 6, 6), "pixel": (2, 1, 32, 32)}  # 32x32 input


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_every_discriminator_forward_backward_export(name, export_round_trip):
    torch.manual_seed(0)
    net = build_discriminator(name, 6, ndf=NDF, n_layers=2 if name == "n_layers" else 3)
    x = torch.randn(2, 6, 32, 32)
    y = net(x)
    assert tuple(y.shape) == EXPECTED_SHAPE[name] and torch.isfinite(y).all()
    y.square().mean().backward()
    for key, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key

    inf = inference_copy(net)
    with torch.no_grad():
        torch.testing.assert_close(export_round_trip(inf, x), inf(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("cls", [NLayerDiscriminator, PixelDiscriminator])
def test_norms(cls, norm):
    net = cls(3, ndf=NDF, norm=norm)
    y = net(torch.randn(2, 3, 32, 32))
    y.mean().backward()
    assert torch.isfinite(y).all()
    keys = net.state_dict().keys()
    assert any(k.endswith("running_mean") for k in keys) == (norm == "batch")


def test_patchgan_receptive_field_is_70():
    net = build_discriminator("basic", 3, ndf=2, norm="none").eval()
    x = torch.zeros(1, 3, 140, 140, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()  # one patch away from the borders
    rows = x.grad.abs().sum((0, 1, 3)).nonzero()
    cols = x.grad.abs().sum((0, 1, 2)).nonzero()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_pixel_discriminator_sees_one_pixel():
    net = build_discriminator("pixel", 3, ndf=NDF, norm="none")
    x = torch.zeros(1, 3, 8, 8, requires_grad=True)
    net(x)[0, 0, 3, 5].backward()
    assert x.grad.abs().sum((0, 1)).nonzero().tolist() == [[3, 5]]


def test_n_layers_depth():
    for n_layers in (1, 2, 4, 5):
        net = build_discriminator("n_layers", 3, ndf=NDF, n_layers=n_layers)
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) == n_layers + 2
        assert convs[-2].out_channels == NDF * min(2 ** n_layers, 8)  # channel multiplier capped at 8


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"netD: expected one of \['basic', 'n_layers', 'pixel'\], got 'patch'"):
        build_discriminator("patch", 3)
    with pytest.raises(ValueError, match="'basic' is the 70x70 PatchGAN with n_layers=3, got n_layers=4"):
        build_discriminator("basic", 3, n_layers=4)
    with pytest.raises(ValueError, match="norm: expected one of"):
        build_discriminator("pixel", 3, norm="layer")
    with pytest.raises(ValueError, match=r"NLayerDiscriminator: expected .*\(N, 6, H, W\), got \(1, 3, 64, 64\)"):
        build_discriminator("basic", 6, ndf=NDF)(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"PixelDiscriminator: expected .*\(N, 6, H, W\), got \(6, 64, 64\)"):
        build_discriminator("pixel", 6, ndf=NDF)(torch.zeros(6, 64, 64))
