"""Generators: reference parity (golden outputs), every GENERATORS entry at tiny size, specs, input checks."""
import json

import pytest
import torch
from torch import nn

from nets import GENERATORS, ResnetGenerator, UnetGenerator, build_generator, generator_spec, inference_copy

NGF = 4
EXTRA_ARGS = {"unet": {"num_downs": 5}, "resnet": {"n_blocks": 2}}  # the entries whose size is not in the name
SIDE = {"unet_128": 128, "unet_256": 256}  # a U-Net needs H, W divisible by 2**num_downs; 32 for the others


def tiny_generator(name, norm="batch", use_dropout=False):
    return build_generator(name, 3, 2, ngf=NGF, norm=norm, use_dropout=use_dropout, **EXTRA_ARGS.get(name, {}))


# ---- reference parity ------------------------------------------------------------------------------------------
GOLDEN = {
    "unet128_batch_ngf8.pt": lambda c: UnetGenerator(c["input_nc"], c["output_nc"], 7, ngf=c["ngf"], norm=c["norm"]),
    "resnet6_instance_ngf8.pt": lambda c: ResnetGenerator(c["input_nc"], c["output_nc"], ngf=c["ngf"], norm=c["norm"],
                                                          n_blocks=6),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_reference_outputs_eval_and_train_mode(golden, name):
    g = golden(name)
    net = GOLDEN[name](g["config"])
    net.load_state_dict(g["state_dict"], strict=True)  # same module structure: same keys and shapes
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(g["input"]), g["output"], atol=1e-5, rtol=0)
        if "output_train_mode" in g:  # BatchNorm with batch statistics
            torch.testing.assert_close(net.train()(g["input"]), g["output_train_mode"], atol=1e-5, rtol=0)
        else:  # no BatchNorm: train mode must not change anything
            torch.testing.assert_close(net.train()(g["input"]), g["output"], atol=1e-5, rtol=0)


# ---- every entry at tiny size ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_generator_forward_backward_export(name, export_round_trip):
    torch.manual_seed(0)
    net = tiny_generator(name, norm="instance" if name.startswith("resnet") else "batch", use_dropout=True)
    side = SIDE.get(name, 32)
    x = torch.rand(2, 3, side, side) * 2 - 1
    y = net(x)
    assert y.shape == (2, 2, side, side)
    assert torch.isfinite(y).all() and y.abs().max() <= 1  # tanh output
    y.square().mean().backward()
    for key, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())

    inf = inference_copy(net)
    with torch.no_grad():
        torch.testing.assert_close(export_round_trip(inf, x), inf(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("name", ["unet", "resnet"])
def test_norms_forward_backward_and_reference_biases(name, norm):
    torch.manual_seed(0)
    net = tiny_generator(name, norm=norm)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = net(x)
    y.mean().backward()
    assert torch.isfinite(y).all() and all(torch.isfinite(p.grad).all() for p in net.parameters())
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]
    kind = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d, "none": None}[norm]
    assert (len(norms) > 0) == (kind is not None) and all(type(m) is kind for m in norms)
    # the reference gives a conv a bias only where InstanceNorm follows; the output conv always has one
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with_bias = sum(m.bias is not None for m in convs)
    assert with_bias == (len(convs) if norm == "instance" else 1)


def test_train_mode_bn_uses_batch_statistics():
    torch.manual_seed(0)
    net = tiny_generator("unet")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        train_out = net.train()(x)
        assert not torch.allclose(net.eval()(x), train_out)


def test_dropout_layers_where_the_reference_puts_them():
    unet = build_generator("unet_256", 3, 3, ngf=NGF, use_dropout=True)
    assert sum(isinstance(m, nn.Dropout) for m in unet.modules()) == 3  # the ngf*8 middle levels
    resnet = build_generator("resnet_6blocks", 3, 3, ngf=NGF, use_dropout=True)
    assert sum(isinstance(m, nn.Dropout) for m in resnet.modules()) == 6  # one per block
    assert "model.10.conv_block.6.weight" in resnet.state_dict()  # the Dropout shifts the second conv
    assert not any(isinstance(m, nn.Dropout) for m in build_generator("unet_128", 3, 3, ngf=NGF).modules())


def test_size_multiple():
    assert build_generator("unet_256", 3, 3, ngf=NGF).size_multiple == 256
    assert build_generator("unet", 3, 3, ngf=NGF, num_downs=6).size_multiple == 64
    assert build_generator("resnet_9blocks", 3, 3, ngf=NGF).size_multiple == 4
    net = build_generator("resnet", 1, 1, ngf=NGF, n_blocks=1)
    assert net(torch.zeros(1, 1, 12, 20)).shape == (1, 1, 12, 20)


# ---- specs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_spec_rebuilds_the_architecture(name):
    net = tiny_generator(name, norm="instance", use_dropout=True)
    spec = generator_spec(net)
    assert json.loads(json.dumps(spec)) == spec  # plain, JSON-serialisable (translator.json)
    rebuilt = build_generator(**spec)
    assert type(rebuilt) is type(net) and rebuilt.size_multiple == net.size_multiple
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert str(rebuilt) == str(net)  # same modules, dropout included
    assert generator_spec(inference_copy(net)) == spec


def test_generator_spec_rejects_other_nets():
    with pytest.raises(TypeError, match="expected a UnetGenerator or ResnetGenerator, got Conv2d"):
        generator_spec(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="padding_type='zero'"):
        generator_spec(ResnetGenerator(3, 3, ngf=NGF, n_blocks=1, padding_type="zero"))


# ---- bad input -------------------------------------------------------------------------------------------------
def test_wrong_input_shapes_name_expected_and_actual():
    unet = build_generator("unet", 3, 3, ngf=NGF, num_downs=5)
    with pytest.raises(ValueError, match=r"UnetGenerator: expected an image batch \(N, 3, H, W\), "
                                         r"got \(1, 4, 32, 32\)"):
        unet(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"got \(3, 32, 32\)"):
        unet(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) with H, W divisible by 32, got \(1, 3, 48, 32\)"):
        unet(torch.zeros(1, 3, 48, 32))
    resnet = build_generator("resnet_6blocks", 1, 3, ngf=NGF)
    with pytest.raises(ValueError, match=r"ResnetGenerator: .*divisible by 4, got \(2, 1, 32, 30\)"):
        resnet(torch.zeros(2, 1, 32, 30))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"netG: expected one of \['resnet', 'resnet_6blocks', .*got 'unet_512'"):
        build_generator("unet_512", 3, 3)
    with pytest.raises(ValueError, match=r"norm: expected one of \['batch', 'instance', 'none'\], got 'group'"):
        build_generator("unet_128", 3, 3, norm="group")
    with pytest.raises(ValueError, match="needs num_downs"):
        build_generator("unet", 3, 3)
    with pytest.raises(ValueError, match="needs n_blocks"):
        build_generator("resnet", 3, 3)
    with pytest.raises(ValueError, match="'unet_128' has num_downs=7, got num_downs=6"):
        build_generator("unet_128", 3, 3, num_downs=6)
    with pytest.raises(ValueError, match="'resnet_9blocks' has n_blocks=9, got n_blocks=3"):
        build_generator("resnet_9blocks", 3, 3, n_blocks=3)
    with pytest.raises(ValueError, match=r"num_downs must be >= 5 \(.*\), got 4"):
        UnetGenerator(3, 3, 4)
    with pytest.raises(ValueError, match=r"padding_type: expected one of \['reflect', 'replicate', 'zero'\]"):
        ResnetGenerator(3, 3, n_blocks=0, padding_type="circular")
    with pytest.raises(ValueError, match="init_type"):
        build_generator("unet_128", 3, 3, init_type="uniform")
