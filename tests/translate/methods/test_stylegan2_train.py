"""Training a StyleGAN2 prior: a few-step fit with R1 and path-length steps, resume, export, reload, generate."""
import math

import pytest
import torch
from PIL import Image

from priors import load_prior
from priors.generate import z_for
from translate.train import callbacks, runner
from translate.deploy.checkpoints import load_checkpoint
from translate.cli import main
from translate.train.config import load_config
from translate.methods.diffaugment import cutout, diff_augment, translation
from safeio import ConfigError
from translate.methods.stylegan2 import StyleGAN2, StyleGAN2Config, lazy_correction

TINY = dict(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16,
            mbstd_group_size=2)


def write_config(tmp_path):
    path = tmp_path / "prior.yaml"
    path.write_text(f"""
method: stylegan2
run_dir: {tmp_path / 'run'}
data:
  kind: toyfaces
  toyfaces: {{size: 32, n_train: 12, n_val: 2, seed: 0}}
  preprocess: none
  batch_size: 4
  num_workers: 0
model:
  resolution: 32
  z_dim: 16
  w_dim: 16
  mapping_layers: 2
  channel_base: 256
  channel_max: 16
  mbstd_group_size: 2
  r1_gamma: 1.0
  d_reg_interval: 2      # R1 at minibatches 0 and 2 of the 3 per epoch
  g_reg_interval: 2      # path length too
  ema_kimg: 0.01
  augment: [color, translation, cutout]
  val_samples: 4
trainer:
  max_epochs: 1
  accelerator: cpu
  log_every_n_steps: 1
  enable_progress_bar: false
  limit_val_batches: 1
logger:
  image_every_n_steps: 0
  wandb: {{mode: disabled}}
checkpoint:
  monitor: null
""")
    return path


def test_fit_resume_export_generate(tmp_path, capsys):
    config = write_config(tmp_path)
    trainer, module = runner.fit(load_config([config]))
    metrics = trainer.callback_metrics
    for key in ("train/G", "train/D", "train/G_pl", "train/pl_length", "train/D_r1"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert metrics["train/D_r1"] > 0 and metrics["train/pl_length"] > 0
    assert module.pl_mean > 0 and module.n_minibatches == 3 and module.n_seen == 12
    # 3 minibatches: G and D steps each, + path length at 0 and 2, + R1 at 0 and 2
    assert trainer.global_step == 3 * 2 + 2 + 2
    g = dict(module.net_g.named_parameters())
    assert any(not torch.equal(p, g[k]) for k, p in module.g_ema.named_parameters())
    assert torch.equal(module.g_ema.mapping.w_avg, module.net_g.mapping.w_avg)
    assert (tmp_path / "run" / "images").is_dir()  # the validation grid of G_ema samples

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["stylegan2_progress"] == {"n_seen": 12, "n_minibatches": 3}
    trainer2, resumed = runner.fit(load_config([config], ["trainer.max_epochs=2"]), resume="last")
    assert resumed.n_minibatches == 6 and resumed.n_seen == 24
    # the lazy-regularization schedule continues: minibatches 3, 4, 5 regularize at 4 only
    assert trainer2.global_step == trainer.global_step + 3 * 2 + 1 + 1

    prior = tmp_path / "prior"
    assert main(["export", "--ckpt", str(last), "--out", str(prior)]) == 0
    G = load_prior(prior)
    assert G.img_resolution == 32 and G.n_latent == 2 * int(math.log2(32)) - 2
    _, from_ckpt = runner.load_run(last)
    z = z_for([0, 1, 2], 16)
    with torch.no_grad():
        expected = from_ckpt.g_ema(z, truncation_psi=0.7, noise_mode="const")
        assert torch.allclose(G(z, truncation_psi=0.7, noise_mode="const"), expected, atol=1e-6)
        assert not torch.allclose(from_ckpt.net_g(z, noise_mode="const"), expected, atol=1e-3)
    assert main(["export", "--ckpt", str(last), "--out", str(prior)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["generate", "--prior", str(prior), "--seeds", "0-3", "--out", str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)


def test_adam_gets_the_lazy_regularization_correction():
    module = StyleGAN2(model=StyleGAN2Config(**TINY, lr=0.002, g_reg_interval=4, d_reg_interval=16))
    opt_g, opt_d = module.configure_optimizers()
    assert lazy_correction(4) == pytest.approx(0.8)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.002 * 4 / 5)
    assert opt_g.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** 0.8))
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.002 * 16 / 17)
    assert opt_d.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert {id(p) for p in opt_g.param_groups[0]["params"]} == {id(p) for p in module.net_g.parameters()}


def test_ema_half_life_and_rampup():
    module = StyleGAN2(model=StyleGAN2Config(**TINY, ema_kimg=0.008, ema_rampup=None))
    with torch.no_grad():
        for p in module.net_g.parameters():
            p.add_(1.0)
    before = [p.clone() for p in module.g_ema.parameters()]
    module.update_ema(8)  # 8 images with a half-life of 8 images: halfway
    for old, p_ema, p in zip(before, module.g_ema.parameters(), module.net_g.parameters()):
        assert torch.allclose(p_ema, 0.5 * old + 0.5 * p, atol=1e-6)
    ramped = StyleGAN2(model=StyleGAN2Config(**TINY, ema_kimg=10.0, ema_rampup=0.05))
    with torch.no_grad():
        ramped.net_g.mapping.fc0.weight.add_(1.0)
    ramped.update_ema(4)  # nothing seen yet: the ramped half-life is 0, G_ema takes G's weights
    assert torch.equal(ramped.g_ema.mapping.fc0.weight, ramped.net_g.mapping.fc0.weight)


def test_regularizers_backpropagate_through_the_ops_twice():
    torch.manual_seed(0)
    module = StyleGAN2(model=StyleGAN2Config(**TINY, r1_gamma=10.0, augment=["translation", "cutout", "color"]))
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    module.r1_penalty(real).backward()
    grads = {k: p.grad for k, p in module.net_d.named_parameters()}
    # every weight gets a finite, non-zero gradient (biases after the minibatch stddev only move the lrelu's
    # piecewise-constant slopes, so |grad_x D| does not depend on them: zero or no gradient is right there)
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    assert all(g is not None and g.abs().sum() > 0 for k, g in grads.items() if k.endswith("weight"))
    loss, length = module.path_length_penalty(4)
    assert module.pl_mean == pytest.approx(0.01 * length.item(), rel=1e-5)  # lerp from 0 with decay 0.01
    loss.backward()
    grads = [p.grad for p in module.net_g.synthesis.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_bad_inputs_name_what_was_expected():
    module = StyleGAN2(model=StyleGAN2Config(**TINY))
    with pytest.raises(ValueError, match=r"expected images \(N, 3, 32, 32\)"):
        module.real_images({"B": torch.zeros(2, 3, 64, 64)})
    assert module.real_images({"B": torch.zeros(7, 3, 32, 32)}).shape[0] == 6  # whole mbstd groups of 2
    with pytest.raises(ValueError, match="model.augment"):
        StyleGAN2(model=StyleGAN2Config(**TINY, augment=["rotate"]))
    with pytest.raises(ValueError, match="model.g_reg_interval"):
        StyleGAN2(model=StyleGAN2Config(**TINY, g_reg_interval=0))


def test_diffaugment_shifts_cuts_and_differentiates_twice():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 16, 16)
    moved = translation(x, ratio=0.25)
    for i in range(3):  # every output is the input shifted by whole pixels, zeros where nothing came in
        found = False
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                ref = torch.zeros_like(x[i])
                ys, xs = slice(max(dy, 0), 16 + min(dy, 0)), slice(max(dx, 0), 16 + min(dx, 0))
                ref[:, ys, xs] = x[i][:, max(-dy, 0):16 - max(dy, 0), max(-dx, 0):16 - max(dx, 0)]
                found |= torch.equal(moved[i], ref)
        assert found, i
    cut = cutout(torch.ones(8, 1, 16, 16))
    zeros = (cut == 0).sum(dim=[1, 2, 3])
    assert (zeros > 0).all() and (zeros <= 64).all()  # at most an 8x8 square, partly outside at the borders
    xd = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    state = torch.get_rng_state()

    def f(t):
        torch.set_rng_state(state)  # the same random transform on every call of gradcheck
        return diff_augment(t, ["color", "translation", "cutout"])

    assert torch.autograd.gradgradcheck(f, (xd,))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        diff_augment(torch.zeros(3, 8, 8), ["color"])


def test_ddp_two_cpu_processes_count_every_rank_s_images(tmp_path, fit_ddp):
    """R1 and path length (double backward) under Lightning's DDP; the EMA's image count is the global one."""
    config = write_config(tmp_path)
    last = fit_ddp(tmp_path / "run", "--config", str(config), "data.batch_size=2", "model.mbstd_group_size=2")
    # 12 images over 2 processes x batch 2 = 3 minibatches per process; every process's images count
    assert last["stylegan2_progress"] == {"n_seen": 12, "n_minibatches": 3}
    assert last["global_step"] == 3 * 2 + 2 + 2  # G and D steps, + path length and R1 at minibatches 0 and 2


def test_every_n_train_steps_counts_minibatches_not_optimizer_steps(tmp_path, monkeypatch):
    """A StyleGAN2 minibatch takes 2-4 optimizer steps (here 4, 2, 4, 2, ...): saves still come every 2 minibatches,
    and the end of training saves last.ckpt."""
    saved = []
    save = callbacks.RunCheckpoint.save

    def spy(self, trainer):
        if self.name == "last.ckpt" and trainer.global_step != self._saved_step:
            saved.append(trainer.fit_loop.epoch_loop.batch_progress.total.processed)
        save(self, trainer)

    monkeypatch.setattr(callbacks.RunCheckpoint, "save", spy)
    config = write_config(tmp_path)
    trainer, module = runner.fit(load_config([config], ["trainer.max_epochs=2", "checkpoint.every_n_train_steps=2",
                                                        "data.toyfaces.n_train=10"]))
    assert module.n_minibatches == 6 and trainer.global_step == 6 * 2 + 3 + 3
    assert saved == [2, 4, 6]
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["stylegan2_progress"]["n_minibatches"] == 6

    saved.clear()  # 3 more minibatches: 8, then the end of training at 9
    runner.fit(load_config([config], ["trainer.max_epochs=3", "checkpoint.every_n_train_steps=2",
                                      "data.toyfaces.n_train=10"]), resume="last")
    assert saved == [8, 9]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["stylegan2_progress"]["n_minibatches"] == 9


def test_parameters_a_regularizer_does_not_reach_still_take_adam_steps(tmp_path):
    """G's ToRGB biases get no gradient from the path-length penalty, D's output bias none from R1: like NVIDIA's
    `+ 0 * output` terms they get a zero gradient, so every parameter of an optimizer has the same Adam step count."""
    from translate.methods.stylegan2 import sanitize_grads

    trainer, module = runner.fit(load_config([write_config(tmp_path)]))
    for opt, expected in zip(trainer.optimizers, (3 + 2, 3 + 2)):  # 3 main steps + regularization at 0 and 2
        steps = {int(s["step"]) for s in opt.state_dict()["state"].values()}
        assert steps == {expected}
    p, q, frozen = (torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True), torch.zeros(1))
    p.grad = torch.tensor([float("nan"), float("inf"), -float("inf")])
    sanitize_grads([p, q, frozen])
    assert p.grad.tolist() == [0.0, 1e5, -1e5] and torch.equal(q.grad, torch.zeros(2)) and frozen.grad is None


def test_ddp_keeps_the_prior_s_buffers_per_process(tmp_path):
    """As NVIDIA (broadcast_buffers=False): pl_mean and w_avg are not overwritten by rank 0's every step."""
    p2p = runner.build_trainer(load_config([], ["trainer.strategy=ddp", "trainer.accelerator=cpu"]), tmp_path)
    sg2 = runner.build_trainer(load_config([write_config(tmp_path)], ["trainer.strategy=ddp"]), tmp_path)
    assert sg2.strategy._ddp_kwargs["broadcast_buffers"] is False
    assert p2p.strategy._ddp_kwargs["broadcast_buffers"] is True  # batch-norm statistics follow rank 0


SG3_TINY = dict(TINY, architecture="stylegan3-t", channel_base=64, channel_max=8, pl_weight=0.0,
                style_mixing_prob=0.0, magnitude_ema_beta=0.5, sg3_layers=3, sg3_critical=1, sg3_margin=2)


def test_stylegan3_prior_trains_with_r1_and_exports(tmp_path):
    """model.architecture stylegan3-t: G and D steps with R1 (differentiated twice through filtered_lrelu), the EMA
    copies the magnitude buffers, and G_ema exports as a StyleGAN3 prior that load_prior renders."""
    from priors import stylegan3

    torch.manual_seed(0)
    module = StyleGAN2(model=StyleGAN2Config(**SG3_TINY))
    assert isinstance(module.net_g, stylegan3.Generator)
    layer = getattr(module.net_g.synthesis, module.net_g.synthesis.layer_names[0])
    before = float(layer.magnitude_ema)
    fake, ws = module.train().sample(2)
    assert fake.shape == (2, 3, 32, 32) and ws.shape[1] == 5 and float(layer.magnitude_ema) != before
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    module.r1_penalty(real).backward()
    from translate.methods.losses import g_nonsaturating

    g_nonsaturating(module.net_d(fake)).backward()
    grads = [p.grad for p in module.net_g.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    module.update_ema(2)
    assert float(getattr(module.g_ema.synthesis, layer_name := module.net_g.synthesis.layer_names[0]).magnitude_ema) \
        == float(getattr(module.net_g.synthesis, layer_name).magnitude_ema)
    G = load_prior(module.export_to(tmp_path / "prior"))
    z = z_for([0, 1], 16)
    with torch.no_grad():
        torch.testing.assert_close(G(z), module.g_ema(z), atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="model.pl_weight: StyleGAN3 trains without path-length") as e:
        StyleGAN2(model=StyleGAN2Config(**dict(SG3_TINY, pl_weight=2.0)))
    assert e.value.key == "model.pl_weight"
    with pytest.raises(ConfigError, match="model.architecture: expected one of"):
        StyleGAN2(model=StyleGAN2Config(**dict(TINY, architecture="stylegan4")))
