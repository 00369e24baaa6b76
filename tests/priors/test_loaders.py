"""The prior loaders against the reference implementations' own images (golden files): NVIDIA state dict and network
pickle (read without running its code), rosinality and pSp checkpoints, our format; strictness and error messages."""
import argparse
import json
import os
import pickle

import pytest
import torch
from torch.torch_version import TorchVersion

from priors import load_prior
from priors.loaders import PriorLoadError, convert_prior, load_nvlabs_pickle, read_network_pickle, save_prior
from safeio import UnsafePickleError
from priors.stylegan2 import Generator, GeneratorConfig

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "sg2")
NV_PT = os.path.join(DATA, "nvlabs_tiny.pt")
NV_PKL = os.path.join(DATA, "nvlabs_tiny_network.pkl")
ROS = os.path.join(DATA, "rosinality_tiny.pt")
TOL = dict(atol=1e-5, rtol=0)


def _load(path):
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def golden():
    return _load(NV_PT)


@pytest.fixture(scope="module")
def ros():
    return _load(ROS)


def check_generator(G, g):
    """Every image of nvlabs_tiny.pt, from ws and from z."""
    e = g["extra"]
    assert isinstance(G, Generator) and not G.training and G.n_latent == 8
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(g["z"]), g["ws"], **TOL)
        torch.testing.assert_close(G.synthesis(g["ws"], noise_mode="const"), g["img"], **TOL)
        torch.testing.assert_close(G(g["z"], noise_mode="const"), g["img"], **TOL)
        torch.testing.assert_close(G.mapping(g["z"], truncation_psi=0.7), e["ws_trunc0.7"], **TOL)
        torch.testing.assert_close(G.synthesis(e["ws_trunc0.7"], noise_mode="const"), e["img_trunc0.7"], **TOL)
        torch.testing.assert_close(G(g["z"], truncation_psi=0.7, noise_mode="const"), e["img_trunc0.7"], **TOL)
        torch.testing.assert_close(G.synthesis(g["ws"], noise_mode="none"), e["img_noise_none"], **TOL)
        torch.testing.assert_close(G.synthesis(g["ws"], noise_mode="const", fused_modconv=False),
                                   e["img_fused_modconv_false"], **TOL)


def test_nvlabs_state_dict(golden):
    check_generator(load_prior(NV_PT), golden)


def test_nvlabs_network_pickle_without_running_its_code(golden):
    G = load_prior(NV_PKL)
    check_generator(G, golden)
    data = read_network_pickle(NV_PKL)
    assert data["G_ema"].class_name.endswith("Generator") and data["G_ema"].init_kwargs == golden["init_kwargs"]


@pytest.mark.gpu
def test_golden_images_on_cuda(golden):
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        G = load_prior(NV_PKL).cuda()
        with torch.no_grad():
            img = G(golden["z"].cuda(), noise_mode="const")
        torch.testing.assert_close(img.cpu(), golden["img"], atol=1e-4, rtol=0)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_pickle_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"G_ema": Evil()}))
    with pytest.raises(UnsafePickleError, match=r"evil.pkl: refusing to load '(posix|os)\.system'"):
        read_network_pickle(p)
    with pytest.raises(pickle.UnpicklingError, match="nothing in the file is executed"):
        load_prior(p)
    p.write_bytes(pickle.dumps({"G_ema": __import__("builtins").eval}))  # a reference alone is refused too
    with pytest.raises(UnsafePickleError, match="refusing to load 'builtins.eval'"):
        load_prior(p)
    assert not (tmp_path / "pwned.txt").exists()


def test_pickle_without_a_generator(tmp_path):
    p = tmp_path / "data.pkl"
    p.write_bytes(pickle.dumps({"D": {"x": 1}}))
    with pytest.raises(PriorLoadError, match=r"no 'G_ema' network in this pickle \(found \['D'\]\)"):
        load_nvlabs_pickle(p)
    p.write_bytes(b"not a pickle")
    with pytest.raises(PriorLoadError, match="data.pkl: not a readable network pickle"):
        load_prior(p)


def test_rosinality_reproduces_its_images(ros):
    G = load_prior(ROS)
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(ros["z"]), ros["ws"], **TOL)
        torch.testing.assert_close(G.synthesis(ros["ws"], noise_mode="const"), ros["img"], **TOL)
        trunc = G.mapping(ros["z"], truncation_psi=0.7)  # latent_avg became w_avg
        torch.testing.assert_close(G.synthesis(trunc, noise_mode="const"), ros["img_trunc0.7"], **TOL)


def test_psp_decoder_and_rosinality_strictness(ros, tmp_path):
    state = {f"decoder.{k}": v for k, v in ros["g_ema"].items()}
    state["encoder.input_layer.0.weight"] = torch.zeros(2, 3, 3, 3)  # the encoder is not the prior's business
    torch.save({"state_dict": state, "latent_avg": ros["latent_avg"].reshape(1, -1).repeat(8, 1)},
               tmp_path / "psp.pt")
    with torch.no_grad():
        G = load_prior(tmp_path / "psp.pt")
        torch.testing.assert_close(G.synthesis(ros["ws"], noise_mode="const"), ros["img"], **TOL)
        torch.testing.assert_close(G.mapping.w_avg, ros["latent_avg"].reshape(-1))
    bad = dict(ros["g_ema"], **{"convs.0.conv.extra": torch.zeros(1)})
    torch.save({"g_ema": bad}, tmp_path / "bad.pt")
    with pytest.raises(PriorLoadError, match=r"keys not used \(1\): convs.0.conv.extra"):
        load_prior(tmp_path / "bad.pt")
    bad = {k: v for k, v in ros["g_ema"].items() if k != "convs.1.noise.weight"}
    torch.save({"g_ema": bad}, tmp_path / "bad.pt")
    with pytest.raises(PriorLoadError, match=r"missing \(1\): convs.1.noise.weight"):
        load_prior(tmp_path / "bad.pt")
    bad = dict(ros["g_ema"], **{"convs.0.conv.blur.kernel": torch.ones(4, 4)})
    torch.save({"g_ema": bad}, tmp_path / "bad.pt")
    with pytest.raises(PriorLoadError, match=r"convs.0.conv.blur.kernel: only the \[1, 3, 3, 1\] blur kernel"):
        load_prior(tmp_path / "bad.pt")
    bad = dict(ros["g_ema"], **{"convs.1.activate.bias": torch.zeros(65)})
    torch.save({"g_ema": bad}, tmp_path / "bad.pt")
    with pytest.raises(PriorLoadError, match=r"shape mismatch \(1\): synthesis.b8.conv1.bias: expected \(64,\), "
                                             r"got \(65,\)"):
        load_prior(tmp_path / "bad.pt")
    torch.save({"g_ema": ros["g_ema"], "latent_avg": torch.randn(8, 64)}, tmp_path / "bad.pt")
    with pytest.raises(PriorLoadError, match=r"latent_avg of shape \(8, 64\) is not one w of size 64"):
        load_prior(tmp_path / "bad.pt")
    torch.save({"state_dict": {"encoder.x": torch.zeros(1)}}, tmp_path / "enc.pt")
    with pytest.raises(PriorLoadError, match="without 'g_ema' or 'decoder.\\*' generator weights"):
        load_prior(tmp_path / "enc.pt")


def test_rosinality_training_checkpoint_without_latent_avg(ros, tmp_path):
    """rosinality's train.py saves g, d, g_ema, optimizer states and its argparse options, but no latent_avg."""
    torch.save({"g": ros["g_ema"], "d": {"convs.0.0.weight": torch.zeros(1)}, "g_ema": ros["g_ema"],
                "args": argparse.Namespace(size=32, n_mlp=2, latent=64)}, tmp_path / "g.pt")
    with pytest.warns(RuntimeWarning, match="no latent_avg"):
        G = load_prior(tmp_path / "g.pt")
    # the estimate is the mean w; latent_avg in the golden file is a mean of 1000 ws
    assert (G.mapping.w_avg - ros["latent_avg"]).abs().max() < 0.25 * ros["latent_avg"].abs().max()


def test_convert_to_our_format_and_back(golden, tmp_path):
    out = convert_prior(NV_PKL, tmp_path / "prior")
    assert sorted(p.name for p in out.iterdir()) == ["prior.json", "prior.safetensors"]
    meta = json.loads((out / "prior.json").read_text())
    assert meta["format_version"] == 1 and meta["generator"]["channel_base"] == 2048 and meta["n_latent"] == 8
    torch.testing.assert_close(torch.tensor(meta["w_avg"]), golden["state_dict"]["mapping.w_avg"])
    G = load_prior(out)
    check_generator(G, golden)
    for path in (out / "prior.json", out / "prior.safetensors"):  # either file of the pair names the prior
        assert all(torch.equal(v, G.state_dict()[k]) for k, v in load_prior(path).state_dict().items())
    pair = convert_prior(ROS, tmp_path / "ros.safetensors")  # a file pair instead of a folder
    assert pair.name == "ros.json" and (tmp_path / "ros.safetensors").is_file()
    a, b = load_prior(ROS), load_prior(pair)
    with torch.no_grad():
        assert torch.equal(a.synthesis(golden["ws"], noise_mode="const"), b.synthesis(golden["ws"], noise_mode="const"))
    # what is there already is replaced only when asked, and the source never
    (out / "prior.safetensors").write_bytes(b"the user's file")
    with pytest.raises(FileExistsError, match=r"prior.json exists; pass --overwrite to replace it"):
        convert_prior(ROS, out)
    assert (out / "prior.safetensors").read_bytes() == b"the user's file"
    convert_prior(ROS, out, overwrite=True)
    assert load_prior(out).state_dict().keys() == a.state_dict().keys()
    with pytest.raises(ValueError, match="refusing to overwrite the source prior"):
        convert_prior(out, out, overwrite=True)
    assert convert_prior(ROS, tmp_path / "ros.safetensors", overwrite=True) == pair  # a file pair is replaced too
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"afile is a file"):
        convert_prior(ROS, tmp_path / "afile" / "prior")


def test_save_and_load_a_fresh_generator(tmp_path):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8,
                                  mapping_layers=1, conv_clamp=256.0))
    G.mapping.w_avg.normal_()
    H = load_prior(save_prior(G, tmp_path / "p"))
    assert H.config == G.config
    assert all(torch.equal(H.state_dict()[k], v) for k, v in G.state_dict().items())


def test_errors_name_the_file_and_the_problem(golden, tmp_path):
    sd = dict(golden["state_dict"])
    sd.pop("mapping.w_avg")
    sd["mapping.fc9.weight"] = torch.zeros(1)
    torch.save({"init_kwargs": golden["init_kwargs"], "state_dict": sd}, tmp_path / "bad.pt")
    with pytest.raises(PriorLoadError, match=r"bad.pt does not fit Generator: missing \(1\): mapping.w_avg; "
                                             r"unexpected \(1\): mapping.fc9.weight"):
        load_prior(tmp_path / "bad.pt")
    torch.save({"init_kwargs": dict(golden["init_kwargs"], synthesis_kwargs={"architecture": "orig"}),
                "state_dict": sd}, tmp_path / "arch.pt")
    with pytest.raises(PriorLoadError, match="arch.pt: not a supported StyleGAN2 generator configuration"):
        load_prior(tmp_path / "arch.pt")
    with pytest.raises(FileNotFoundError, match="nothing.pkl"):
        load_prior(tmp_path / "nothing.pkl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/prior.json"):
        load_prior(tmp_path / "empty")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(PriorLoadError, match=r"other.pt: not a known StyleGAN2/3 format \(found \['weights'\]"):
        load_prior(tmp_path / "other.pt")
    torch.save({"g_ema": ros_like_object()}, tmp_path / "code.pt")
    with pytest.raises(PriorLoadError, match="code.pt with torch.load\\(weights_only=True\\)"):
        load_prior(tmp_path / "code.pt")
    out = save_prior(load_prior(NV_PT), tmp_path / "ours")
    meta = json.loads((out / "prior.json").read_text())
    (out / "prior.json").write_text(json.dumps(dict(meta, format_version=99)))
    with pytest.raises(PriorLoadError, match="format_version 99 is not supported"):
        load_prior(out)
    (out / "prior.json").write_text(json.dumps(dict(meta, w_avg=[0.0] * 64)))
    with pytest.raises(PriorLoadError, match="w_avg differs"):
        load_prior(out)


class Unpicklable:
    pass


def ros_like_object():
    return Unpicklable()


def test_a_truncated_safetensors_prior_is_an_error_naming_the_file(tmp_path):
    from priors.loaders import PriorLoadError, load_prior, save_prior
    from priors.stylegan2 import Generator, GeneratorConfig

    out = save_prior(Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, channel_base=64,
                                               channel_max=8, mapping_layers=1)), tmp_path / "prior")
    weights = out / "prior.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(PriorLoadError, match=r"cannot read .*prior.safetensors as safetensors \(truncated"):
        load_prior(out)


# ------------------------------------------------------------------------------------------------------ StyleGAN3

SG3 = os.path.join(os.path.dirname(__file__), "..", "data", "sg3")


def check_sg3(G, g, n=1):
    """The first n images of a StyleGAN3 golden file, from z (mapping, w_avg, truncation) and from ws."""
    from priors import stylegan3

    assert isinstance(G, stylegan3.Generator) and not G.training and G.num_ws == g["ws"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(g["z"]), g["ws"], atol=1e-4, rtol=0)
        torch.testing.assert_close(G(g["z"][:n]), g["img"][:n], atol=1e-4, rtol=0)
        ws = G.mapping(g["z"][-n:], truncation_psi=0.7)
        torch.testing.assert_close(G.synthesis(ws), g["extra"]["img_trunc0.7"][-n:], atol=1e-4, rtol=0)


def test_stylegan3_network_pickle_and_state_dict():
    t, r = _load(os.path.join(SG3, "sg3t_tiny.pt")), _load(os.path.join(SG3, "sg3r_tiny.pt"))
    check_sg3(load_prior(os.path.join(SG3, "sg3t_tiny_network.pkl")), t)
    check_sg3(load_prior(os.path.join(SG3, "sg3r_tiny.pt")), r)  # {init_kwargs, state_dict, ...}
    from priors.loaders import load_discriminator

    D = load_discriminator(os.path.join(SG3, "sg3t_tiny_network.pkl"))  # StyleGAN2's D, block_kwargs.freeze_layers
    assert D(torch.zeros(2, 3, 32, 32)).shape == (2, 1)
    G = load_nvlabs_pickle(os.path.join(SG3, "sg3t_tiny_network.pkl"), key="G")  # the same buffers, other weights
    assert torch.equal(G.synthesis.input.freqs, t["state_dict"]["synthesis.input.freqs"])
    assert not torch.equal(G.mapping.fc0.weight, t["state_dict"]["mapping.fc0.weight"])


def test_stylegan3_pickle_whose_source_would_run_code_is_loaded_without_running_it(tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    pkl = open(os.path.join(SG3, "sg3t_tiny_network.pkl"), "rb").read()
    source = "import os; open('ran.txt', 'w').write('the embedded source ran')"
    patched, count = b"", 0
    pos = 0
    for m in re.finditer(rb"\x8c(.)# Module source omitted", pkl, flags=re.S):
        n = m.group(1)[0]
        code = (source + "  # ").ljust(n, "x").encode()
        patched += pkl[pos:m.start()] + b"\x8c" + bytes([n]) + code
        pos, count = m.start() + 2 + n, count + 1
    patched += pkl[pos:]
    assert count >= 2 and len(patched) == len(pkl)
    (tmp_path / "evil_src.pkl").write_bytes(patched)
    stub = read_network_pickle(tmp_path / "evil_src.pkl")["G_ema"]
    assert stub.class_name.endswith("Generator")
    G = load_prior(tmp_path / "evil_src.pkl")
    golden_sd = _load(os.path.join(SG3, "sg3t_tiny.pt"))["state_dict"]  # exactly the .pt's tensors
    assert G.state_dict().keys() == golden_sd.keys()
    assert all(torch.equal(G.state_dict()[k], v) for k, v in golden_sd.items())
    assert not (tmp_path / "ran.txt").exists()
    exec(compile(source, "check", "exec"))  # the same source, run on purpose, does write the file
    assert (tmp_path / "ran.txt").exists()


def test_stylegan3_convert_to_our_format_and_back(tmp_path):
    r = _load(os.path.join(SG3, "sg3r_tiny.pt"))
    out = convert_prior(os.path.join(SG3, "sg3r_tiny.pt"), tmp_path / "sg3_prior")
    meta = json.loads((out / "prior.json").read_text())
    assert meta["architecture"] == "stylegan3" and meta["n_latent"] == 16
    assert meta["generator"]["conv_kernel"] == 1 and meta["generator"]["use_radial_filters"] is True
    G = load_prior(out)
    assert all(torch.equal(G.state_dict()[k], v) for k, v in r["state_dict"].items())
    check_sg3(G, r)
    (out / "prior.json").write_text(json.dumps(dict(meta, architecture="stylegan9")))
    with pytest.raises(PriorLoadError, match=r"prior.json: architecture 'stylegan9' is not supported"):
        load_prior(out)


def test_stylegan3_errors_name_what_is_missing_or_mismatched(tmp_path):
    t = _load(os.path.join(SG3, "sg3t_tiny.pt"))
    sd = dict(t["state_dict"])
    sd.pop("synthesis.L3_36_38.down_filter")
    torch.save({"init_kwargs": t["init_kwargs"], "state_dict": sd}, tmp_path / "nofilter.pt")
    with pytest.raises(PriorLoadError, match=r"nofilter.pt does not fit Generator: missing \(1\): "
                                             r"synthesis.L3_36_38.down_filter"):
        load_prior(tmp_path / "nofilter.pt")
    torch.save({"init_kwargs": dict(t["init_kwargs"], conv_kernel=1), "state_dict": t["state_dict"]},
               tmp_path / "kernel.pt")
    with pytest.raises(PriorLoadError, match=r"kernel.pt does not fit Generator: shape mismatch .*"
                                             r"synthesis.L0_36_64.weight: expected \(64, 64, 1, 1\), got \(64, 64, 3, 3\)"):
        load_prior(tmp_path / "kernel.pt")
    torch.save({"init_kwargs": dict(t["init_kwargs"], use_noise=True), "state_dict": t["state_dict"]},
               tmp_path / "kw.pt")
    with pytest.raises(PriorLoadError, match=r"kw.pt: not a supported StyleGAN3 generator configuration: "
                                             r"unsupported use_noise=True"):
        load_prior(tmp_path / "kw.pt")
