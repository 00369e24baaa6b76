"""The StyleGAN2 generator and its loaders against NVIDIA's own outputs (golden files)."""
import os
import pickle

import pytest
import torch
from torch.torch_version import TorchVersion

from priors.loaders import PriorLoadError, convert_prior, load_prior, read_network_pickle
from priors.stylegan2 import Generator

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "sg2")
NV_PT = os.path.join(DATA, "nvlabs_tiny.pt")
NV_PKL = os.path.join(DATA, "nvlabs_tiny_network.pkl")


@pytest.fixture(scope="module")
def golden():
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(NV_PT, weights_only=True)


def check_generator(G, g):
    e = g["extra"]
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(g["z"], None), g["ws"], atol=1e-5, rtol=0)
        torch.testing.assert_close(G.synthesis(g["ws"], noise_mode="const"), g["img"], atol=1e-5, rtol=0)
        torch.testing.assert_close(G(g["z"], None, noise_mode="const"), g["img"], atol=1e-5, rtol=0)
        torch.testing.assert_close(G.mapping(g["z"], None, truncation_psi=0.7), e["ws_trunc0.7"], atol=1e-5, rtol=0)
        torch.testing.assert_close(G.synthesis(e["ws_trunc0.7"], noise_mode="const"), e["img_trunc0.7"], atol=1e-5,
                                   rtol=0)
        torch.testing.assert_close(G.synthesis(g["ws"], noise_mode="none"), e["img_noise_none"], atol=1e-5, rtol=0)
        torch.testing.assert_close(G.synthesis(g["ws"], noise_mode="const", fused_modconv=False),
                                   e["img_fused_modconv_false"], atol=1e-5, rtol=0)


def test_nvlabs_state_dict(golden):
    G = load_prior(NV_PT)
    assert G.num_ws == 8 == 2 * 5 - 2
    check_generator(G, golden)


def test_nvlabs_network_pickle_without_running_its_code(golden):
    check_generator(load_prior(NV_PKL), golden)


def test_convert_to_our_format_and_back(golden, tmp_path):
    out = convert_prior(NV_PKL, tmp_path / "prior")
    assert sorted(p.name for p in out.iterdir()) == ["prior.json", "prior.safetensors"]
    check_generator(load_prior(out), golden)
    check_generator(load_prior(out / "prior.json"), golden)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"G_ema": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load 'posix.system'|refusing to load 'os.system'"):
        read_network_pickle(p)


def test_strict_errors(golden, tmp_path):
    sd = dict(golden["state_dict"])
    sd.pop("mapping.w_avg")
    sd["mapping.fc9.weight"] = torch.zeros(1)
    torch.save({"init_kwargs": golden["init_kwargs"], "state_dict": sd}, tmp_path / "bad.pt")
    with pytest.raises(PriorLoadError, match=r"missing \(1\): mapping.w_avg; unexpected \(1\): mapping.fc9.weight"):
        load_prior(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="nothing.pkl"):
        load_prior(tmp_path / "nothing.pkl")


def test_shapes_noise_modes_and_double_backward():
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 256, "channel_max": 16})
    z = torch.randn(2, 16)
    ws = G.mapping(z)
    assert ws.shape == (2, 8, 16)
    ws = ws.detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="random")
    assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    (g,) = torch.autograd.grad(img.square().sum(), ws, create_graph=True)  # path-length style
    g.square().sum().backward()
    assert G.synthesis.b32.conv1.weight.grad is not None
    mixed = G.mix_styles(ws.detach(), torch.zeros_like(ws), range(4, 8))
    assert torch.equal(mixed[:, 4:], torch.zeros(2, 4, 16)) and torch.equal(mixed[:, :4], ws[:, :4].detach())
    with pytest.raises(ValueError, match=r"expected ws of shape \(N, 8, 16\)"):
        G.synthesis(torch.zeros(1, 7, 16))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


ROS = os.path.join(DATA, "rosinality_tiny.pt")


@pytest.fixture(scope="module")
def ros():
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(ROS, weights_only=True)


def test_rosinality_reproduces_its_images(ros):
    G = load_prior(ROS)
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(ros["z"]), ros["ws"], atol=1e-5, rtol=0)  # z path
        torch.testing.assert_close(G.synthesis(ros["ws"], noise_mode="const"), ros["img"], atol=1e-5, rtol=0)
        trunc = G.mapping(ros["z"], truncation_psi=0.7)  # latent_avg became w_avg
        torch.testing.assert_close(G.synthesis(trunc, noise_mode="const"), ros["img_trunc0.7"], atol=1e-5, rtol=0)


def test_psp_decoder_part_and_strictness(ros, tmp_path):
    state = {f"decoder.{k}": v for k, v in ros["g_ema"].items()}
    state["encoder.input_layer.0.weight"] = torch.zeros(2, 3, 3, 3)  # the encoder is not the prior's business
    torch.save({"state_dict": state, "latent_avg": ros["latent_avg"]}, tmp_path / "psp.pt")
    with torch.no_grad():
        img = load_prior(tmp_path / "psp.pt").synthesis(ros["ws"], noise_mode="const")
    torch.testing.assert_close(img, ros["img"], atol=1e-5, rtol=0)
    bad = dict(ros["g_ema"])
    bad["convs.0.conv.extra"] = torch.zeros(1)
    torch.save({"g_ema": bad}, tmp_path / "bad.pt")
    with pytest.raises(PriorLoadError, match="keys not used.*convs.0.conv.extra"):
        load_prior(tmp_path / "bad.pt")
    bad = dict(ros["g_ema"])
    bad["convs.0.conv.blur.kernel"] = torch.ones(4, 4)
    torch.save({"g_ema": bad}, tmp_path / "bad2.pt")
    with pytest.raises(PriorLoadError, match="blur kernel"):
        load_prior(tmp_path / "bad2.pt")
