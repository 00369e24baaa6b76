"""Reference nets load strictly and reproduce the reference outputs (eval and train mode) to 1e-5."""
import copy

import pytest
import torch

from nets import inference_copy
from nets.junyanz import (WeightsImportError, clean_state_dict, import_discriminator, import_generator,
                          infer_generator_spec)

CASES = [
    ("unet128_batch_ngf8.pt", import_generator, {"name": "unet", "num_downs": 7, "ngf": 8, "norm": "batch"}),
    ("resnet6_instance_ngf8.pt", import_generator, {"name": "resnet", "n_blocks": 6, "ngf": 8, "norm": "instance"}),
    ("basicD_batch_in6_ndf8.pt", import_discriminator, {"name": "basic", "ndf": 8, "input_nc": 6, "norm": "batch"}),
    ("basicD_instance_in3_ndf8.pt", import_discriminator, {"name": "basic", "ndf": 8, "input_nc": 3, "norm": "instance"}),
]


@pytest.mark.parametrize("name,importer,expected", CASES, ids=[c[0] for c in CASES])
def test_golden_outputs(golden, name, importer, expected):
    g = golden(name)
    net, spec = importer(g["state_dict"])
    assert {k: spec[k] for k in expected} == expected
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(g["input"]), g["output"], atol=1e-5, rtol=0)
        if "output_train_mode" in g:
            torch.testing.assert_close(net.train()(g["input"]), g["output_train_mode"], atol=1e-5, rtol=0)


def test_sample_stats_copy_equals_train_mode_bn_at_batch_one(golden):
    g = golden("unet128_batch_ngf8.pt")
    net, _ = import_generator(g["state_dict"])
    x = g["input"][:1]
    with torch.no_grad():
        train_mode = copy.deepcopy(net).train()(x)
        sample = inference_copy(net, norm_stats="sample")
        torch.testing.assert_close(sample(x), train_mode, atol=1e-5, rtol=0)
        # a sample's output does not depend on the rest of its batch
        torch.testing.assert_close(sample(g["input"])[:1], sample(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(inference_copy(net, "running")(g["input"]), g["output"], atol=1e-5, rtol=0)


def test_file_with_module_prefix_and_old_instance_norm_keys(golden, tmp_path):
    g = golden("resnet6_instance_ngf8.pt")
    sd = {f"module.{k}": v for k, v in g["state_dict"].items()}
    sd["module.model.2.running_mean"] = torch.zeros(8)  # InstanceNorm buffers of PyTorch < 0.4
    sd["module.model.2.running_var"] = torch.ones(8)
    torch.save(sd, tmp_path / "latest_net_G.pth")
    net, spec = import_generator(tmp_path / "latest_net_G.pth")
    with torch.no_grad():
        torch.testing.assert_close(net(g["input"]), g["output"], atol=1e-5, rtol=0)


def test_old_batchnorm_without_num_batches_tracked(golden):
    g = golden("unet128_batch_ngf8.pt")
    sd = {k: v for k, v in g["state_dict"].items() if not k.endswith("num_batches_tracked")}
    assert "model.model.1.model.2.num_batches_tracked" in clean_state_dict(sd)
    import_generator(sd)


def test_strict_errors_list_keys(golden):
    sd = dict(golden("unet128_batch_ngf8.pt")["state_dict"])
    sd["extra.weight"] = torch.zeros(1)
    del sd["model.model.3.bias"]
    with pytest.raises(WeightsImportError, match=r"missing \(1\): model.model.3.bias.*unexpected \(1\): extra.weight"):
        import_generator(sd)
    sd = dict(golden("unet128_batch_ngf8.pt")["state_dict"])
    with pytest.raises(WeightsImportError, match="shape mismatch"):
        import_generator(sd, ngf=16)
    with pytest.raises(WeightsImportError, match="not a reference"):
        infer_generator_spec({"foo": torch.zeros(1)})


def test_refuses_pickled_code_and_missing_file(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model.model.0.weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsImportError, match="weights_only"):
        import_generator(tmp_path / "evil.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        import_generator(tmp_path / "nope.pth")
