"""Domain-guided encoder training (In-Domain GAN Inversion as a pSp option): a discriminator trained alongside with
R1, the encoder's adversarial term, D weights from a trained StyleGAN2, resume, export without D, clear errors."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from priors.loaders import PriorLoadError, load_discriminator, read_network_pickle
from priors.stylegan2 import Discriminator, DiscriminatorConfig
from translate import cli
from translate.train import runner
from translate.methods.psp import PSP, PSPConfig

NVLABS_PKL = str(Path(__file__).resolve().parents[2] / "data" / "sg2" / "nvlabs_tiny_network.pkl")
TINY_D = dict(d_channel_base=256, d_channel_max=16, d_mbstd_group_size=2)


def module(prior, **model):
    base = dict(prior=str(prior), channels=[4, 8, 8, 16], input_size=32, loss_size=32, lpips_lambda=0.0,
                id_lambda=0.0, adv_lambda=0.1, **TINY_D)
    return PSP(model=PSPConfig(**{**base, **model}), input_nc=3)


# no loss nets, a small D with lazy R1, batches of 4 toy faces at 32 px
DOMAIN_RUN = ["model.lpips_lambda=0", "model.id_lambda=0", "model.adv_lambda=0.1", "model.d_channel_base=256",
              "model.d_channel_max=16", "model.d_mbstd_group_size=2", "model.d_reg_interval=2", "data.kind=toyfaces",
              "data.toyfaces.task=faces", "data.toyfaces.size=32", "data.toyfaces.n_train=8", "data.toyfaces.n_val=4",
              "data.batch_size=4"]


def d_checkpoint(path, D, resolution):
    """A checkpoint in the layout of this framework's StyleGAN2 training (only what the D loader reads)."""
    c = D.config
    torch.save({"hyper_parameters": {"model": {"resolution": resolution, "channel_base": c.channel_base,
                                               "channel_max": c.channel_max, "mbstd_group_size": 2},
                                     "output_nc": 3},
                "state_dict": {f"net_d.{k}": v for k, v in D.state_dict().items()}}, path)
    return path


def test_fit_trains_encoder_and_discriminator_resumes_and_exports_without_d(prior, tmp_path, tiny_psp_config):
    cfg = tiny_psp_config(prior, tmp_path / "run", *DOMAIN_RUN, "trainer.max_steps=4")  # 2 steps: 2 optimizers each
    trainer, mod = runner.fit(cfg)
    metrics = trainer.callback_metrics
    for k in ("l2", "adv", "loss", "D", "D_real", "D_fake", "D_r1"):
        assert torch.isfinite(metrics[f"train/{k}"]), k
    assert mod.n_steps == 2
    decoder_before = {k: v.clone() for k, v in mod.net.decoder.state_dict().items()}
    d_before = {k: v.clone() for k, v in mod.net_d.state_dict().items()}
    assert any(k.startswith("net_d.") for k in mod.state_dict())  # D is saved for resuming

    cfg = tiny_psp_config(prior, tmp_path / "run", *DOMAIN_RUN, "trainer.max_steps=8")
    trainer, mod = runner.fit(cfg, resume="last")
    assert mod.n_steps == 4  # restored from the checkpoint, then 2 more
    assert any(not torch.equal(v, d_before[k]) for k, v in mod.net_d.state_dict().items())  # D trained
    for k, v in mod.net.decoder.state_dict().items():  # the prior never trains
        assert torch.equal(v, decoder_before[k]), k

    bundle = tmp_path / "bundle"
    assert cli.main(["export", "--ckpt", str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
                     "--out", str(bundle)]) == 0
    from safetensors.torch import load_file

    assert not any("net_d" in k or k.startswith("b4.") for f in bundle.glob("*.safetensors") for k in load_file(f))


def test_steps_update_d_and_e_separately_with_r1(prior):
    torch.manual_seed(0)
    m = module(prior, r1_gamma=4.0)
    y = torch.rand(4, 3, 32, 32) * 2 - 1
    y_hat = torch.rand(4, 3, 32, 32) * 2 - 1
    codes = m.net.latent_avg + torch.randn(4, m.net.n_styles, 16)
    # the encoder's adversarial term: the non-saturating loss of D on the outputs
    terms = m.losses(None, y, y_hat, codes)
    assert terms["adv"].item() == pytest.approx(0.1 * F.softplus(-m.net_d(y_hat)).mean().item(), rel=1e-5)

    class Opt:  # records what D's step sees
        def zero_grad(self, set_to_none=True):
            m.net_d.zero_grad(set_to_none=True)

        def step(self):
            self.grads = {n: p.grad.clone() for n, p in m.net_d.named_parameters()}

    m.manual_backward = lambda loss: loss.backward()
    opt = Opt()
    out = m._discriminator_step(opt, y, y_hat)
    real = y.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m.net_d(real).sum(), real)
    assert out["D_r1"].item() == pytest.approx(2.0 * g.square().sum(dim=[1, 2, 3]).mean().item(), rel=1e-4)
    d_loss = F.softplus(m.net_d(y_hat)).mean() + F.softplus(-m.net_d(y)).mean()
    assert out["D"].item() == pytest.approx(d_loss.item(), rel=1e-5)
    # the gradient D's optimizer applies is that of D loss + R1 (R1 needs double backward through D)
    m.net_d.zero_grad()
    (d_loss + 2.0 * torch.autograd.grad(m.net_d(real).sum(), real, create_graph=True)[0].square().sum(
        dim=[1, 2, 3]).mean()).backward()
    for n, p in m.net_d.named_parameters():
        torch.testing.assert_close(opt.grads[n], p.grad, rtol=1e-4, atol=1e-6)
    # lazy R1: off between intervals
    m.cfg.d_reg_interval, m.n_steps = 4, 1
    assert "D_r1" not in m._discriminator_step(opt, y, y_hat)


def test_an_odd_batch_is_cut_to_whole_stddev_groups(prior):
    m = module(prior)
    assert m.d_batch(torch.zeros(5, 3, 32, 32)).shape[0] == 4
    assert m.d_batch(torch.zeros(1, 3, 32, 32)).shape[0] == 1


def test_discriminator_weights_from_a_stylegan2_checkpoint_and_an_nvidia_pickle(prior, tmp_path):
    torch.manual_seed(1)
    trained = Discriminator(DiscriminatorConfig(img_resolution=32, channel_base=256, channel_max=16,
                                                mbstd_group_size=2))
    ckpt = d_checkpoint(tmp_path / "prior.ckpt", trained, 32)
    m = module(prior, discriminator_weights=str(ckpt))
    for k, v in trained.state_dict().items():
        assert torch.equal(m.net_d.state_dict()[k], v), k

    # NVIDIA's pickle: its D read without running its code, every key used, the block-level filters checked
    D = load_discriminator(NVLABS_PKL)
    stub = read_network_pickle(NVLABS_PKL)["D"].tensors()
    assert torch.equal(D.b32.conv0.weight, stub["b32.conv0.weight"]) and torch.equal(D.b4.out.bias, stub["b4.out.bias"])
    assert torch.isfinite(D(torch.rand(4, 3, 32, 32) * 2 - 1)).all()
    m = module(prior, discriminator_weights=NVLABS_PKL, d_channel_base=1024, d_channel_max=32)
    assert torch.equal(m.net_d.b16.conv1.weight, stub["b16.conv1.weight"])
    assert m.net_d.b4.mbstd.group_size == 2  # the configured group, not the file's


def test_a_discriminator_that_does_not_fit_is_an_error_naming_the_keys(prior, tmp_path):
    with pytest.raises(ValueError, match=r"model.d_channel_base is 256, the file's D has 1024"):
        module(prior, discriminator_weights=NVLABS_PKL)
    big = Discriminator(DiscriminatorConfig(img_resolution=64, channel_base=256, channel_max=16))
    with pytest.raises(ValueError, match=r"model.loss_size is 32, the file's D has 64"):
        module(prior, discriminator_weights=str(d_checkpoint(tmp_path / "d64.ckpt", big, 64)))
    with pytest.raises(FileNotFoundError, match=r"model.discriminator_weights .*nope.ckpt"):
        module(prior, discriminator_weights=str(tmp_path / "nope.ckpt"))
    torch.save({"state_dict": {"encoder.x": torch.zeros(1)}}, tmp_path / "psp.pt")
    with pytest.raises(PriorLoadError, match="not a StyleGAN2 training checkpoint"):
        module(prior, discriminator_weights=str(tmp_path / "psp.pt"))
    with pytest.raises(ValueError, match="model.d_reg_interval"):
        module(prior, d_reg_interval=0)
    with pytest.raises(ValueError, match="model.adv_lambda must be >= 0"):
        module(prior, adv_lambda=-1.0)


def test_a_checkpoint_is_used_without_its_initialisation_files(prior, tmp_path, tiny_psp_config):
    trained = Discriminator(DiscriminatorConfig(img_resolution=32, channel_base=256, channel_max=16,
                                                mbstd_group_size=2))
    ckpt = d_checkpoint(tmp_path / "d.ckpt", trained, 32)
    cfg = tiny_psp_config(prior, tmp_path / "run", *DOMAIN_RUN, "trainer.max_steps=2",
                          f"model.discriminator_weights={ckpt}")
    runner.fit(cfg)
    ckpt.unlink()  # the D it started from is gone: the run's checkpoint holds the trained D
    _, mod = runner.load_run(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert mod.net_d is not None and mod.cfg.discriminator_weights is None


def test_restyle_encoders_train_with_the_discriminator_too(prior, tmp_path, tiny_psp_config):
    cfg = tiny_psp_config(prior, tmp_path / "run", *DOMAIN_RUN, "trainer.max_steps=2", "model.restyle_iters=2")
    trainer, mod = runner.fit(cfg)
    assert mod.n_steps == 1 and torch.isfinite(trainer.callback_metrics["train/adv"])
    assert torch.isfinite(trainer.callback_metrics["train/D"])
