"""pix2pix: one training step against the reference implementation, and each GAN mode trains."""
import os

import pytest
import pytorch_lightning as pl
import torch
from torch.torch_version import TorchVersion
from torch.utils.data import DataLoader

from translate.methods.losses import GAN_MODES
from translate.methods.pix2pix import Pix2Pix, Pix2PixConfig

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "..", "data", "junyanz", "pix2pix_step.pt")


def load_golden():
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(GOLDEN, weights_only=True)


def run_steps(module, batches, **trainer_kw):
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=2 * len(batches), max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, **trainer_kw,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    return trainer


def test_one_step_matches_reference(adam_step_matches):
    g = load_golden()
    c = g["config"]
    module = Pix2Pix(
        model=Pix2PixConfig(netG=c["netG"], ngf=c["ngf"], netD=c["netD"], ndf=c["ndf"], norm=c["norm"],
                            use_dropout=c["use_dropout"], gan_mode=c["gan_mode"], lambda_l1=c["lambda_L1"],
                            lr=c["lr"], beta1=c["betas"][0], beta2=c["betas"][1]),
        input_nc=c["input_nc"], output_nc=c["output_nc"],
    )
    module.net_g.load_state_dict(g["state_dict_G_before"])
    module.net_d.load_state_dict(g["state_dict_D_before"])
    batch = {"A": g["input"]["real_A"], "B": g["input"]["real_B"], "A_path": ["a", "b"]}
    trainer = run_steps(module, [batch])
    assert trainer.global_step == 2  # one D and one G optimizer step

    metrics = trainer.callback_metrics
    for ours, ref in [("D_fake", "D_fake"), ("D_real", "D_real"), ("D", "D"), ("G_GAN", "G_GAN"),
                      ("G_L1", "G_L1"), ("G", "G")]:
        assert metrics[f"train/{ours}"].item() == pytest.approx(g["losses"][ref], abs=1e-5, rel=1e-6), ours
    for name, sd in (("net_g", g["state_dict_G_after"]), ("net_d", g["state_dict_D_after"])):
        adam_step_matches(getattr(module, name).state_dict(), sd, c["lr"], name)  # tolerates Adam's sign flips


@pytest.mark.parametrize("gan_mode", GAN_MODES)
def test_each_gan_mode_trains_and_changes_both_nets(gan_mode):
    torch.manual_seed(0)
    module = Pix2Pix(model=Pix2PixConfig(netG="unet", num_downs=5, ngf=4, ndf=4, gan_mode=gan_mode, use_dropout=True),
                     input_nc=1, output_nc=3)
    g0 = [p.detach().clone() for p in module.net_g.parameters()]
    d0 = [p.detach().clone() for p in module.net_d.parameters()]
    batch = {"A": torch.rand(2, 1, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1, "A_path": ["a", "b"]}
    trainer = run_steps(module, [batch, batch])
    assert trainer.global_step == 4
    assert all(torch.isfinite(v) for v in trainer.callback_metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, module.net_g.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, module.net_d.parameters()))


def test_test_modes_and_bad_options():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    m = Pix2Pix(model=Pix2PixConfig(netG="unet", num_downs=6, ngf=4, ndf=4, use_dropout=True, test_mode="batchstats"))
    net = m.inference_net()
    torch.testing.assert_close(net(x), net(x))  # deterministic
    torch.testing.assert_close(net(x[:1]), net(x)[:1], atol=1e-5, rtol=0)  # independent of the batch
    m.cfg.test_mode = "train"
    stochastic = m.inference_net()
    assert not torch.allclose(stochastic(x), stochastic(x))  # reference: dropout stays on at test time
    with pytest.raises(ValueError, match="test_mode"):
        Pix2Pix(model=Pix2PixConfig(test_mode="sometimes"))
    with pytest.raises(ValueError, match="gan_mode"):
        Pix2Pix(model=Pix2PixConfig(gan_mode="wgan"))
