"""A published-layout pSp checkpoint translates as the reference code does.

tests/data/psp/reference_outputs.pt holds what eladrich/pixel2style2pixel computes (scripts/psp_reference_outputs.py)
with every weight seeded from its state-dict key. Here the same weights are rebuilt from the published key layout
(psp_1024_layout.tsv) alone, saved as a pSp checkpoint and read through our loader, so that the encoder, the
rosinality decoder mapping, latent_avg, face_pool, style mixing, the single-head encoders, the loss networks
(identity, MoCo, LPIPS) and the frontalization config's training loss are each compared with the reference's
numbers, not only their key names; so are the weights its Ranger optimizer reaches and the super-resolution
inputs that `downsample_psp` makes (pixel for pixel)."""
import os

import numpy as np
import pytest
import torch

from nets.encoders import BackboneEncoderUsingLastLayerIntoW, BackboneEncoderUsingLastLayerIntoWPlus, load_arcface
from nets.psp import PSPNet
from scripts.psp_reference_outputs import (
    FRONTALIZATION_LAMBDAS, INPUT_SEED, LATENT_MASK, MIX_ALPHA, MIX_SEED, OUTPUT_SIZE, SR_FACTORS, TARGET_SEED,
    arcface_file, image, latent_avg, lpips_files, moco_file, ranger_problem, seeded_weights, sr_source, summary,
    train_ranger,
)
from tests.nets.test_encoders import read_layout
from nets.similarity import IDLoss
from translate.deploy.psp_checkpoint import load_psp_checkpoint

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "psp")


def published_layout():
    """{key: (shape, torch dtype)} of psp_1024_layout.tsv (tests/nets/test_encoders.py reads it)."""
    return {k: (shape, getattr(torch, dtype.removeprefix("torch."))) for k, (shape, dtype) in read_layout("").items()}


@pytest.fixture(scope="module")
def reference():
    return torch.load(os.path.join(DATA, "reference_outputs.pt"), weights_only=True)


@pytest.fixture(scope="module")
def psp_file(tmp_path_factory):
    """The seeded pSp model as a published checkpoint file (1.2 GB, removed after this module)."""
    path = tmp_path_factory.mktemp("psp") / "psp_seeded.pt"
    opts = {"encoder_type": "GradualStyleEncoder", "input_nc": 3, "label_nc": 0, "output_size": OUTPUT_SIZE,
            "start_from_latent_avg": True, "learn_in_w": False}
    torch.save({"state_dict": seeded_weights(published_layout()), "latent_avg": latent_avg(), "opts": opts}, path)
    yield path
    path.unlink()


@pytest.fixture(scope="module")
def psp_net(psp_file):
    """The seeded pSp model through our reader, as `cli.py import --from psp` builds it, pooled to 256 px as the
    reference's face_pool."""
    ckpt = load_psp_checkpoint(psp_file)
    return PSPNet(ckpt.build_encoder(), ckpt.decoder, ckpt.latent_avg, ckpt.opts["start_from_latent_avg"],
                  resize=256, noise_mode="const").eval()


@pytest.fixture(scope="module")
def loss_files(tmp_path_factory):
    """Seeded model_ir_se50.pth, MoCo v2 and LPIPS (torchvision AlexNet + official heads) files."""
    root = tmp_path_factory.mktemp("loss_nets")
    files = {"model_ir_se50.pth": arcface_file(), "moco.pth.tar": moco_file()}
    files["alexnet.pth"], files["alex.pth"] = lpips_files()
    for name, obj in files.items():
        torch.save(obj, root / name)
    return root


def assert_close(ours, theirs, rtol=1e-4):
    """Equal up to float32 rounding, relative to the tensor's scale."""
    scale = theirs.abs().max().item()
    err = (ours - theirs).abs().max().item()
    assert err <= rtol * max(scale, 1.0), f"max abs error {err:.3g} at scale {scale:.3g}"


def test_fixture_was_made_at_the_published_configuration(reference):
    meta = reference["meta"]
    assert meta["output_size"] == OUTPUT_SIZE and meta["latent_mask"] == list(LATENT_MASK)
    assert meta["mix_alpha"] == MIX_ALPHA and meta["mix_seed"] == MIX_SEED
    assert reference["codes"].shape == (1, 18, 512)


@torch.no_grad()
def test_codes_and_image_match_the_reference(psp_net, reference):
    x = image(INPUT_SEED)
    codes = psp_net.encode(x)  # encoder + latent_avg
    assert_close(codes, reference["codes"])
    ours = summary(psp_net.decode(codes))  # constant noise (randomize_noise=False), pooled to 256
    for part in ("pooled", "crop"):
        assert_close(ours[part], reference["image"][part])


@torch.no_grad()
def test_style_mixing_matches_the_reference(psp_net, reference):
    """PSPNet.variants draws the injected z as the fixture did; the reference mapped it with its style MLP and
    blended layers 8-17 with alpha 0.5."""
    mixed = psp_net.variants(image(INPUT_SEED), 1, LATENT_MASK, MIX_ALPHA, seed=MIX_SEED)[0]
    for part in ("pooled", "crop"):
        assert_close(summary(mixed)[part], reference["mixed"][part])
    # and the mixing changed the output (the comparison above is not of two unmixed images)
    assert (reference["mixed"]["pooled"] - reference["image"]["pooled"]).abs().mean() > 0.1


@pytest.mark.parametrize("cls", [BackboneEncoderUsingLastLayerIntoW, BackboneEncoderUsingLastLayerIntoWPlus])
@torch.no_grad()
def test_single_head_encoders_match_the_reference(cls, reference):
    enc = cls(num_layers=50, mode="ir_se", input_nc=3, output_size=OUTPUT_SIZE).eval()
    state = enc.state_dict()
    seeded = seeded_weights({"encoder." + k: (tuple(v.shape), v.dtype) for k, v in state.items()})
    enc.load_state_dict({k: seeded["encoder." + k] for k in state}, strict=True)
    assert_close(enc(image(INPUT_SEED)), reference["encoders"][cls.__name__])


@torch.no_grad()
def test_loss_networks_match_the_reference(psp_net, reference, loss_files):
    """ArcFace (model_ir_se50.pth), MoCo v2 (moco_v2_800ep_pretrain.pth.tar) and LPIPS (torchvision AlexNet + the
    official heads) in their published file layouts through our loaders; the identity loss on the pSp output."""
    from nets.perceptual import load_lpips
    from nets.similarity import MocoLoss, load_moco

    x, y = image(INPUT_SEED), image(TARGET_SEED)
    id_loss = IDLoss(load_arcface(loss_files / "model_ir_se50.pth"))
    assert_close(id_loss.features(y), reference["arcface"])
    assert id_loss(psp_net(x), y).item() == pytest.approx(reference["id_loss"].item(), abs=1e-5)

    moco = MocoLoss(load_moco(str(loss_files / "moco.pth.tar")))
    pair_x, pair_y = torch.cat([x, y]), torch.cat([y, x])
    assert_close(moco.features(pair_x), reference["moco_features"])
    assert moco(pair_x, pair_y).item() == pytest.approx(reference["moco_loss"].item(), abs=1e-6)

    lpips = load_lpips("alex", loss_files / "alexnet.pth", loss_files / "alex.pth")
    assert lpips(x, y).mean().item() == pytest.approx(reference["lpips"].item(), rel=1e-5)


@torch.no_grad()
def test_frontalization_config_loss_is_the_reference_coach_s(psp_file, psp_net, reference, loss_files, tmp_path):
    """configs/psp/frontalization.yaml, fine-tuning the published-layout model: its weights are the paper's and its
    loss (every pSp term: L2, LPIPS, identity, both crop terms, W-norm) is training/coach.py's calc_loss."""
    from translate.train.config import load_config
    from translate.train.runner import build_module

    config = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "psp", "frontalization.yaml")
    cfg = load_config([config], [f"model.prior={psp_file}", f"model.encoder_weights={psp_file}",
                                 f"model.id_weights={loss_files / 'model_ir_se50.pth'}",
                                 f"model.lpips_backbone={loss_files / 'alexnet.pth'}",
                                 f"model.lpips_weights={loss_files / 'alex.pth'}", f"data.root={tmp_path}"])
    assert {k: getattr(cfg.model, k) for k in FRONTALIZATION_LAMBDAS} == FRONTALIZATION_LAMBDAS
    module = build_module(cfg).eval()
    x, y = image(INPUT_SEED), image(TARGET_SEED)
    codes = module.net.encode(x)
    y_hat = psp_net.decode(codes).clamp(-1, 1)
    terms = module.losses(x, y, y_hat, codes)
    theirs = reference["frontalization_loss"]
    lambdas = {"l2": "l2_lambda", "lpips": "lpips_lambda", "id": "id_lambda", "l2_crop": "l2_lambda_crop",
               "lpips_crop": "lpips_lambda_crop", "w_norm": "w_norm_lambda"}  # our term -> its weight
    assert set(terms) - {"loss"} == set(lambdas)
    for name, weight in lambdas.items():  # the reference logs each term unweighted, as loss_<term>
        assert terms[name].item() / FRONTALIZATION_LAMBDAS[weight] == pytest.approx(theirs[f"loss_{name}"],
                                                                                   rel=1e-4), name
    assert terms["loss"].item() == pytest.approx(theirs["loss"], rel=1e-5)


@pytest.mark.parametrize("factor", SR_FACTORS)
def test_super_resolution_inputs_are_the_reference_s(factor, reference):
    """pSp's BicubicDownSample + ToPILImage (8-bit truncation): identical bytes for every factor of its SR configs."""
    from datamodules.degrade import psp_downsample_image

    src = sr_source()
    src.flags.writeable = False  # as np.asarray of a PIL image: read, never written
    assert np.array_equal(psp_downsample_image(src, factor), reference["sr_low_res"][factor].numpy())


def test_ranger_follows_the_reference_s_trajectory(reference):
    """translate.methods.optim.Ranger (torch's RAdam + Lookahead + gradient centralisation) with its defaults reaches the
    reference's training/ranger.py weights after 40 steps: rectification switch, Lookahead syncs and all."""
    from translate.methods.optim import Ranger

    ours = train_ranger(Ranger)
    for k, theirs in reference["ranger"].items():
        torch.testing.assert_close(ours[k], theirs, atol=1e-6, rtol=0, msg=k)
    start = ranger_problem()[0].state_dict()
    assert max((reference["ranger"][k] - v).abs().max().item() for k, v in start.items()) > 1e-3  # it moved
