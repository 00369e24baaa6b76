"""pSp checkpoints: the published decoder layout goes through the rosinality loader; a small checkpoint in the exact
pSp layout (GPU-saved latent_avg, opts with fields missing) round-trips on the CPU; parts that disagree are errors."""
import argparse
import os

import pytest
import torch

from nets.encoders import ENCODERS
from priors.loaders import rosinality_kernel_keys, rosinality_key_map
from priors.ops import setup_filter
from priors.stylegan2 import GeneratorConfig
from translate.deploy.psp_checkpoint import PSPCheckpointError, load_psp_checkpoint
from safeio import LoadError
from tests.helpers.psp_checkpoints import make_checkpoint, save_as_if_from_gpu

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data")
LAYOUT = os.path.join(DATA, "psp", "psp_1024_layout.tsv")


def decoder_layout():
    rows = {}
    with open(LAYOUT) as f:
        for line in f:
            if line.startswith("decoder."):
                key, shape, dtype = line.rstrip("\n").split("\t")
                rows[key[len("decoder."):]] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return rows


def test_published_decoder_layout_is_config_f_through_the_rosinality_map():
    from priors.loaders import load_rosinality

    layout = decoder_layout()
    kmap = rosinality_key_map(n_mlp=8, n_up=8)
    assert set(layout) == {src for src, _, _ in kmap} | set(rosinality_kernel_keys(8))  # noise + blur buffers too
    sd = {k: torch.zeros(shape) for k, shape in layout.items()}
    for k in rosinality_kernel_keys(8):
        sd[k] = setup_filter([1, 3, 3, 1]) * 4
    G = load_rosinality({"g_ema": sd, "latent_avg": torch.zeros(18, 512)}, "golden layout")  # strict
    assert G.config == GeneratorConfig()  # config F at 1024 px
    assert G.num_ws == 18 and G.img_resolution == 1024


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_round_trip_in_the_psp_layout(ros, tmp_path, monkeypatch, name):
    enc, ckpt = make_checkpoint(ros, name)
    path = tmp_path / "psp_ffhq_encode.pt"
    save_as_if_from_gpu(ckpt, path, monkeypatch)
    if not torch.cuda.is_available():  # the file really needs map_location on this machine
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)

    psp = load_psp_checkpoint(path)
    assert set(psp.encoder_state) == set(enc.state_dict())
    assert all(torch.equal(psp.encoder_state[k], v) for k, v in enc.state_dict().items())
    assert psp.encoder_spec == dict(enc.spec())
    assert psp.latent_avg.device.type == "cpu" and torch.equal(psp.latent_avg, ckpt["latent_avg"])
    # opts: kept where present, backfilled (from the weights where they tell) where missing
    assert psp.opts["exp_dir"] == "/old/run" and psp.opts["lpips_lambda"] == 0.8 and psp.opts["encoder_type"] == name
    assert psp.opts["input_nc"] == 3 and psp.opts["output_size"] == 32 and psp.opts["label_nc"] == 0
    assert psp.opts["learn_in_w"] is False and psp.opts["start_from_latent_avg"] is True
    assert set(psp.backfilled) == {"input_nc", "output_size", "label_nc", "learn_in_w", "start_from_latent_avg"} | (
        {"input_size"} if name == "GradualStyleEncoder" else set())  # the heads tell; else our opts said 32
    assert "encoder.input_layer.0.weight" in psp.backfilled["input_nc"]

    loaded = psp.build_encoder()
    assert not loaded.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), enc.eval()(x), atol=0, rtol=0)
        # the decoder is the prior's rosinality generator: it renders the reference's images, noise buffers included
        torch.testing.assert_close(psp.decoder.synthesis(ros["ws"], noise_mode="const"), ros["img"],
                                   atol=1e-5, rtol=0)
    torch.testing.assert_close(psp.decoder.mapping.w_avg, ros["latent_avg"].reshape(-1))


def test_opts_as_namespace_and_inferred_fields(ros, tmp_path):
    enc, ckpt = make_checkpoint(ros, "GradualStyleEncoder", input_nc=1,
                                opts=argparse.Namespace(label_nc=1, learn_in_w=False))
    del ckpt["latent_avg"]
    torch.save(ckpt, tmp_path / "sketch.pt")
    with pytest.warns(RuntimeWarning, match="no latent_avg"):  # the decoder estimates its w_avg
        psp = load_psp_checkpoint(tmp_path / "sketch.pt")
    assert psp.latent_avg is None and psp.opts["start_from_latent_avg"] is False
    assert psp.opts["encoder_type"] == "GradualStyleEncoder" and psp.opts["input_nc"] == 1
    assert psp.opts["label_nc"] == 1 and "label_nc" not in psp.backfilled and "encoder_type" in psp.backfilled
    assert psp.build_encoder()(torch.zeros(1, 1, 32, 32)).shape == (1, 8, 64)


def test_parts_that_disagree_are_errors(ros, tmp_path):
    with pytest.raises(FileNotFoundError, match="pSp checkpoint not found: .*missing.pt"):
        load_psp_checkpoint(tmp_path / "missing.pt")

    def check(ckpt, match, error=PSPCheckpointError):
        torch.save(ckpt, tmp_path / "bad.pt")
        with pytest.raises(error, match=match):
            load_psp_checkpoint(tmp_path / "bad.pt")

    _, good = make_checkpoint(ros)
    check(dict(good, opts={"input_nc": 1}),
          r"opts\['input_nc'\] is 1, but read off encoder.input_layer.0.weight gives 3")
    check(dict(good, opts={"encoder_type": "BackboneEncoderUsingLastLayerIntoW"}),
          r"opts\['encoder_type'\] is 'BackboneEncoderUsingLastLayerIntoW', but read off the encoder weights "
          r"gives 'GradualStyleEncoder'")
    check(dict(good, opts={"input_size": 256}),
          r"opts\['input_size'\] is 256, but read off the map2style heads gives 32")
    check(dict(good, opts={"output_size": 1024}),
          r"opts\['output_size'\] is 1024, but the decoder's resolution gives 32")
    check({k: v for k, v in good.items() if k != "latent_avg"} | {"opts": {"start_from_latent_avg": True}},
          r"opts\['start_from_latent_avg'\] is set but the checkpoint has no latent_avg")
    check(dict(good, state_dict=dict(good["state_dict"], **{"face_pool.x": torch.zeros(1)})),
          r"keys outside encoder.\* / decoder.\* \(1\): face_pool.x")
    check(dict(good, state_dict={k: v for k, v in good["state_dict"].items() if k.startswith("encoder.")}),
          r"no decoder.\* weights")
    check({"g_ema": ros["g_ema"]}, "not a pSp checkpoint .*found \\['g_ema'\\]")
    _, wide = make_checkpoint(ros, output_size=64)  # 10 style vectors for an 8-style decoder
    check(wide, "the encoder predicts 10 style vectors, the 32-px decoder takes 8")
    _, narrow = make_checkpoint(ros, w_dim=32)
    check(narrow, "the encoder predicts w of size 32, the decoder takes 64")
    _, ckpt = make_checkpoint(ros)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if k != "encoder.latlayer1.bias"}
    check(ckpt, r"missing \(1\): latlayer1.bias", LoadError)  # strict_load's one error type
    _, ckpt = make_checkpoint(ros)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if k != "decoder.noises.noise_3"}
    check(ckpt, r"decoder.\*: does not fit the rosinality key map: missing \(1\): noises.noise_3", Exception)
