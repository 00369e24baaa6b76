"""Import of reference weights: strict loading, architecture inference, cleaning, refusal of code and bad files."""
import json
import os

import pytest
import torch

from nets import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator
from nets.junyanz import (WeightsImportError, clean_state_dict, import_discriminator, import_generator,
                          infer_discriminator_spec, infer_generator_spec, load_state_dict_file)
from safeio import LoadError

GOLDEN_SPECS = {
    "unet128_batch_ngf8.pt": {"name": "unet", "num_downs": 7, "input_nc": 3, "output_nc": 3, "ngf": 8,
                              "norm": "batch", "use_dropout": False},
    "resnet6_instance_ngf8.pt": {"name": "resnet", "n_blocks": 6, "input_nc": 3, "output_nc": 3, "ngf": 8,
                                 "norm": "instance", "use_dropout": False},
    "basicD_batch_in6_ndf8.pt": {"name": "basic", "n_layers": 3, "input_nc": 6, "ndf": 8, "norm": "batch"},
    "basicD_instance_in3_ndf8.pt": {"name": "basic", "n_layers": 3, "input_nc": 3, "ndf": 8, "norm": "instance"},
}


def is_generator(name):
    return "D_" not in name


@pytest.mark.parametrize("name", sorted(GOLDEN_SPECS))
def test_infer_spec_of_reference_state_dicts(golden, name):
    sd = golden(name)["state_dict"]
    spec = (infer_generator_spec if is_generator(name) else infer_discriminator_spec)(sd)
    assert spec == GOLDEN_SPECS[name]
    assert json.loads(json.dumps(spec)) == spec  # plain ints and strings


def save_as_old_checkpoint(sd, net, path):
    """As a DataParallel model saved under PyTorch < 0.4 would be: `module.` prefixes, InstanceNorm running stats."""
    old = {f"module.{k}": v for k, v in sd.items()}
    for layer, m in net.named_modules():
        if isinstance(m, torch.nn.InstanceNorm2d):
            old[f"module.{layer}.running_mean"] = torch.zeros(m.num_features)
            old[f"module.{layer}.running_var"] = torch.ones(m.num_features)
            old[f"module.{layer}.num_batches_tracked"] = torch.tensor(0)
    torch.save(old, path)


@pytest.mark.parametrize("name", sorted(GOLDEN_SPECS))
def test_import_file_round_trip(golden, name, tmp_path):
    """A saved reference file (with DataParallel prefix and old InstanceNorm keys) loads and reproduces the
    reference outputs in eval and in train mode."""
    g = golden(name)
    path = tmp_path / "latest_net.pth"
    build = build_generator if is_generator(name) else build_discriminator
    save_as_old_checkpoint(g["state_dict"], build(**GOLDEN_SPECS[name]), path)
    if "instance" in name:
        assert sum(k.endswith("running_mean") for k in torch.load(path, weights_only=True)) > 0
    net, spec = (import_generator if is_generator(name) else import_discriminator)(path)
    assert spec == GOLDEN_SPECS[name] and not net.training
    with torch.no_grad():
        torch.testing.assert_close(net(g["input"]), g["output"], atol=1e-5, rtol=0)
        torch.testing.assert_close(net.train()(g["input"]), g.get("output_train_mode", g["output"]),
                                   atol=1e-5, rtol=0)


NORMS = ("batch", "instance", "none")
TINY_G = [(name, NORMS[i % 3]) for i, name in enumerate(sorted(GENERATORS))]  # every entry, every norm


@pytest.mark.parametrize("name,norm", TINY_G)
def test_every_generator_round_trips_through_inference(name, norm):
    extra = {"unet": {"num_downs": 6}, "resnet": {"n_blocks": 3}}.get(name, {})
    use_dropout = name.startswith("resnet")  # the only dropout the weights show
    net = build_generator(name, 2, 1, ngf=4, norm=norm, use_dropout=use_dropout, **extra)
    imported, spec = import_generator(net.state_dict())
    depth = {"unet_128": 7, "unet_256": 8, "unet": 6, "resnet_6blocks": 6, "resnet_9blocks": 9, "resnet": 3}[name]
    assert spec == {"name": "unet" if name.startswith("unet") else "resnet",
                    "num_downs" if name.startswith("unet") else "n_blocks": depth, "input_nc": 2, "output_nc": 1,
                    "ngf": 4, "norm": norm, "use_dropout": use_dropout}
    side = max(net.size_multiple, 16)
    x = torch.rand(1, 2, side, side)
    with torch.no_grad():
        torch.testing.assert_close(imported(x), net.eval()(x), atol=0, rtol=0)


@pytest.mark.parametrize("name,norm", [(name, norm) for name in sorted(DISCRIMINATORS) for norm in NORMS])
def test_every_discriminator_round_trips_through_inference(name, norm):
    n_layers = 3 if name == "basic" else 2
    net = build_discriminator(name, 4, ndf=4, n_layers=n_layers, norm=norm)
    _, spec = import_discriminator(net.state_dict())
    expected = {"name": name, "input_nc": 4, "ndf": 4, "norm": norm}
    if name != "pixel":
        expected["n_layers"] = n_layers
    assert spec == expected


def test_n_layers_discriminator_with_three_layers_is_basic():
    sd = build_discriminator("n_layers", 3, ndf=4, n_layers=3).state_dict()
    assert infer_discriminator_spec(sd)["name"] == "basic"


def test_clean_state_dict():
    bn = {"model.1.weight": torch.ones(2), "model.1.bias": torch.zeros(2), "model.1.running_mean": torch.zeros(2),
          "model.1.running_var": torch.ones(2)}
    old_in = {"model.3.running_mean": torch.zeros(2), "model.3.running_var": torch.ones(2),
              "model.3.num_batches_tracked": torch.tensor(0), "model.2.bias": torch.zeros(2)}
    out = clean_state_dict({f"module.{k}": v for k, v in {**bn, **old_in}.items()})
    assert sorted(out) == sorted([*bn, "model.1.num_batches_tracked", "model.2.bias"])  # BN counter added
    assert out["model.1.num_batches_tracked"].dtype == torch.long
    assert list(clean_state_dict({"a.weight": torch.ones(1)})) == ["a.weight"]  # nothing to clean


def test_overrides_win(golden):
    sd = golden("unet128_batch_ngf8.pt")["state_dict"]
    net, spec = import_generator(sd, use_dropout=True)
    assert spec["use_dropout"] and sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 2
    net, spec = import_generator(sd, name="unet_128")
    assert spec["name"] == "unet_128"
    with pytest.raises(ValueError, match="'unet_256' has num_downs=8, got num_downs=7"):
        import_generator(sd, name="unet_256")
    with pytest.raises(TypeError, match=r"unknown overrides \['padding'\]"):
        import_generator(sd, padding="zero")


def test_strict_errors_list_missing_unexpected_and_misshaped_keys(golden):
    sd = dict(golden("unet128_batch_ngf8.pt")["state_dict"])
    sd["extra.weight"] = torch.zeros(1)
    del sd["model.model.3.bias"]
    with pytest.raises(LoadError, match=r"state dict does not fit UnetGenerator: missing \(1\): "
                                        r"model.model.3.bias; unexpected \(1\): extra.weight"):
        import_generator(sd)
    sd = dict(golden("unet128_batch_ngf8.pt")["state_dict"])
    with pytest.raises(LoadError, match=r"shape mismatch \(\d+\): model.model.0.weight: expected "
                                        r"\(16, 3, 4, 4\), got \(8, 3, 4, 4\)"):
        import_generator(sd, ngf=16)
    with pytest.raises(LoadError, match=r"unexpected \(\d+\): .*running_mean"):  # BN weights, no BN
        import_generator(sd, norm="none")


def test_not_a_reference_state_dict():
    with pytest.raises(WeightsImportError, match=r"not a reference pix2pix/CycleGAN generator.*first keys: \['foo'\]"):
        infer_generator_spec({"foo": torch.zeros(1)})
    with pytest.raises(WeightsImportError, match="not a reference pix2pix/CycleGAN discriminator"):
        infer_discriminator_spec(build_generator("resnet_6blocks", 3, 3, ngf=4).state_dict())
    with pytest.raises(WeightsImportError, match="incomplete U-Net state dict: expected key 'model.model.3.weight'"):
        infer_generator_spec({"model.model.0.weight": torch.zeros(4, 3, 4, 4)})


def test_refuses_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())  # harmless, but a weights-only loader must not call anything

    path = tmp_path / "latest_net_G.pth"
    torch.save({"model.model.0.weight": Payload()}, path)
    with pytest.raises(WeightsImportError, match=rf"cannot read {path} .*weights_only=True"):
        import_generator(path)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found: .*nope.pth"):
        import_generator(tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(WeightsImportError, match="garbage.pth"):
        load_state_dict_file(garbage)
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsImportError, match=r"list.pth: expected a state dict \(name -> tensor\), got list"):
        load_state_dict_file(tmp_path / "list.pth")
    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "wrapped.pth")
    assert list(load_state_dict_file(tmp_path / "wrapped.pth")) == ["a"]
