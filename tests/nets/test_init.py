"""Initialisation: seeded builds reproduce the reference's weights bit for bit; each init type's statistics."""
import math

import pytest
import torch
from torch import nn

from nets import build_discriminator, build_generator, init_weights

BUILDS = {  # golden file -> how its config maps onto our builders
    "unet128_batch_ngf8.pt": lambda c: build_generator(c["netG"], c["input_nc"], c["output_nc"], ngf=c["ngf"],
                                                       norm=c["norm"], use_dropout=c["use_dropout"]),
    "resnet6_instance_ngf8.pt": lambda c: build_generator(c["netG"], c["input_nc"], c["output_nc"], ngf=c["ngf"],
                                                          norm=c["norm"], use_dropout=c["use_dropout"]),
    "basicD_batch_in6_ndf8.pt": lambda c: build_discriminator(c["netD"], c["input_nc"], ndf=c["ndf"],
                                                              n_layers=c["n_layers_D"], norm=c["norm"]),
    "basicD_instance_in3_ndf8.pt": lambda c: build_discriminator(c["netD"], c["input_nc"], ndf=c["ndf"],
                                                                 n_layers=c["n_layers_D"], norm=c["norm"]),
}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_seeded_build_equals_reference_init(golden, name):
    """Same modules created in the same order, same init: the reference's define_G/define_D weights exactly."""
    g = golden(name)
    c = g["config"]
    assert c["init_type"] == "normal" and c["init_gain"] == 0.02
    torch.manual_seed(c["seed"])
    sd = BUILDS[name](c).state_dict()
    assert list(sd) == list(g["state_dict"])  # same keys in the same order
    for key, value in sd.items():
        assert torch.equal(value, g["state_dict"][key]), key


def conv_net():
    return nn.Sequential(nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128), nn.ConvTranspose2d(128, 64, 4), nn.Linear(8, 8))


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_types(init_type):
    torch.manual_seed(0)
    gain = 0.5
    net = init_weights(conv_net(), init_type, gain)
    for m in net:
        if isinstance(m, nn.BatchNorm2d):  # the reference's BatchNorm init, whatever the init type
            assert abs(m.weight.mean().item() - 1) < 0.15 and abs(m.weight.std().item() - gain) < 0.1
            assert torch.all(m.bias == 0)
            continue
        w = m.weight
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
        expected_std = {"normal": gain, "xavier": gain * math.sqrt(2 / (fan_in + fan_out)),
                        "kaiming": math.sqrt(2 / fan_in)}.get(init_type)  # kaiming ignores the gain (reference)
        if expected_std is not None:
            assert abs(w.std().item() / expected_std - 1) < 0.1, (type(m).__name__, w.std().item(), expected_std)
        else:  # orthogonal: the rows (or columns) of the flattened weight are orthogonal with norm `gain`
            flat = w.reshape(w.shape[0], -1)
            gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
            torch.testing.assert_close(gram, gain ** 2 * torch.eye(gram.shape[0]), atol=1e-4, rtol=0)
        assert torch.all(m.bias == 0)


def test_unknown_init_type():
    with pytest.raises(ValueError, match=r"init_type: expected one of \['normal', 'xavier', 'kaiming', 'orthogonal'\], "
                                         r"got 'uniform'"):
        init_weights(conv_net(), "uniform")
