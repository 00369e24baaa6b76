"""translate/train/runner.py: behaviour not covered through the CLI tests."""
import warnings
from dataclasses import dataclass

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from translate.methods.interface import Method
from translate.train.config import load_config
from translate.methods.registry import METHODS
from translate.train.callbacks import frozen_modules_expected, undeclared_eval_modules
from translate.train.runner import build_module


@dataclass
class TinyConfig:
    declared: bool = True  # the module declares its prior in frozen_modules


class TinyModule(Method):
    """One trained layer and one kept in eval mode, declared frozen or kept so by hand."""

    config_class = TinyConfig

    def __init__(self, declared: bool):
        super().__init__(TinyConfig(declared))
        self.trained = nn.Linear(2, 2)
        self.prior = nn.Sequential(nn.Linear(2, 2)).eval().requires_grad_(False)
        self.frozen_modules = ("prior",) if declared else ()

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.frozen_modules:  # Method.train does not know it: keep it in eval mode by hand
            self.prior.eval()
        return self

    def inference_net(self) -> nn.Module:
        return self.trained

    def training_step(self, batch, batch_idx):
        return self.trained(self.prior(batch[0])).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.trained.parameters(), lr=0.1)


def eval_mode_warnings(declared: bool):
    module = TinyModule(declared)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with frozen_modules_expected(module):
            trainer.fit(module, data)
    return [str(w.message) for w in caught if "in eval mode" in str(w.message)]


def test_declared_frozen_modules_do_not_warn():
    assert eval_mode_warnings(declared=True) == []


def test_undeclared_module_in_eval_mode_still_warns():
    assert len(eval_mode_warnings(declared=False)) == 1


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_every_method_declares_the_modules_it_keeps_in_eval_mode(prior, tmp_path, tiny_psp_config):
    """pSp's prior and StyleGAN2's G_ema stay in eval mode on purpose; nothing else of any method does."""
    configs = {"psp": tiny_psp_config(prior, tmp_path / "psp"),
               "stylegan2": load_config([], ["method=stylegan2", "data.kind=toyfaces", "model.resolution=16"]),
               "pix2pix": load_config([], ["method=pix2pix"]), "cyclegan": load_config([], ["method=cyclegan"])}
    assert set(configs) == set(METHODS)
    for name, cfg in configs.items():
        module = build_module(cfg).train()
        assert undeclared_eval_modules(module) == [], name
    assert any(not m.training for m in build_module(configs["stylegan2"]).train().modules())  # G_ema


# each method's tiny run with shuffled data and random draws (dropout, image pools, latents, augmentations, noise)
EXACT_RESUME = {
    "cyclegan": ["method=cyclegan", "data.kind=synthetic_unpaired", "data.synthetic.size=32", "data.synthetic.n_train=8",
                 "data.synthetic.n_val=2", "data.batch_size=2", "model.netG=resnet", "model.n_blocks=1", "model.ngf=4",
                 "model.ndf=4", "model.pool_size=3", "model.use_dropout=true"],
    "stylegan2": ["method=stylegan2", "data.kind=toyfaces", "data.toyfaces.size=32", "data.toyfaces.n_train=8",
                  "data.toyfaces.n_val=2", "data.batch_size=2", "model.resolution=32", "model.z_dim=16",
                  "model.w_dim=16", "model.mapping_layers=2", "model.channel_base=256", "model.channel_max=16",
                  "model.mbstd_group_size=2", "model.d_reg_interval=2", "model.g_reg_interval=2",
                  "model.ema_kimg=0.01", "model.augment=[color,translation,cutout]", "model.val_samples=2"],
    "psp": ["method=psp", "model.channels=[4,8,8,16]", "model.input_size=32", "model.loss_size=32",
            "model.lpips_lambda=0", "model.id_lambda=0", "data.kind=toyfaces", "data.toyfaces.size=32",
            "data.toyfaces.n_train=8", "data.toyfaces.n_val=2", "data.batch_size=2"],
}


@pytest.mark.parametrize("method", EXACT_RESUME)
def test_every_method_resumes_a_crashed_run_exactly(method, prior, tmp_path, monkeypatch):
    """4 minibatches per epoch, 2 epochs; a crash after the checkpoint at minibatch 3 and a resume end with the
    weights, EMA and buffers of the run that never stopped (pix2pix: test_cli, every way a run can stop)."""
    from translate.deploy.checkpoints import load_checkpoint
    from translate.cli import main

    common = [*EXACT_RESUME[method], "data.preprocess=none", "data.num_workers=0", "trainer.max_epochs=2",
              "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "trainer.limit_val_batches=1",
              "checkpoint.monitor=null", "logger.image_every_n_steps=0", "logger.wandb.mode=disabled",
              f"model.prior={prior}" if method == "psp" else "seed=0"]
    assert main(["fit", *common, f"run_dir={tmp_path}/whole"]) == 0
    module_class = METHODS[method]
    step, calls = module_class.training_step, []

    def crashing_step(self, *args):
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        calls.append(1)
        return step(self, *args)

    monkeypatch.setattr(module_class, "training_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["fit", *common, f"run_dir={tmp_path}/cut", "checkpoint.every_n_train_steps=3"])
    monkeypatch.setattr(module_class, "training_step", step)
    assert main(["fit", *common, f"run_dir={tmp_path}/cut", "--resume", "last"]) == 0
    whole, resumed = (load_checkpoint(tmp_path / run / "checkpoints" / "last.ckpt") for run in ("whole", "cut"))
    assert resumed["global_step"] == whole["global_step"] > 0
    assert [k for k, v in whole["state_dict"].items() if not torch.equal(v, resumed["state_dict"][k])] == []


def test_resume_summary_says_where_the_data_goes_on(tmp_path):
    from translate.train.rundir import resume_summary

    path = tmp_path / "old.ckpt"
    torch.save({"global_step": 40, "state_dict": {}, "loops": {"fit_loop": {"state_dict": {}}}}, path)
    assert resume_summary(str(path)).endswith("at step 40 (the checkpoint does not say where in the data it stopped: "
                                              "its epoch starts over)")
    position = {"combined_loader": [{"epoch": 2, "batches": 7, "images": 14}]}
    torch.save({"global_step": 40, "state_dict": {}, "loops": {"fit_loop": {"state_dict": position}}}, path)
    assert resume_summary(str(path)).endswith("at step 40: epoch 2 of the data goes on after its minibatch 7 "
                                              "(14 images)")


def test_non_finite_tensors_names_parameters_and_float_buffers():
    from translate.train.callbacks import non_finite_tensors

    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert non_finite_tensors(net) == []
    with torch.no_grad():
        net[0].bias[1] = float("inf")
    net[1].running_var[0] = float("nan")
    assert non_finite_tensors(net) == ["0.bias", "1.running_var"]  # num_batches_tracked (int) is not looked at


def test_config_learning_rates_without_a_schedule_and_per_group(capsys):
    """pSp's Ranger (no LR schedule) with two parameter groups, one of whose rates changed."""
    from types import SimpleNamespace

    from translate.methods.optim import Ranger
    from translate.train.callbacks import ConfigLearningRates

    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    restored = Ranger([{"params": a.parameters()}, {"params": b.parameters(), "lr": 1e-3}], lr=1e-4)
    module = SimpleNamespace(configure_optimizers=lambda: Ranger(
        [{"params": a.parameters()}, {"params": b.parameters(), "lr": 1e-3}], lr=3e-5))
    trainer = SimpleNamespace(optimizers=[restored], lr_scheduler_configs=[], is_global_zero=True)
    callback = ConfigLearningRates()
    callback.on_train_start(trainer, module)  # a fresh run: nothing to do
    assert [g["lr"] for g in restored.param_groups] == [1e-4, 1e-3]
    callback.on_load_checkpoint(trainer, module, {})
    callback.on_train_start(trainer, module)
    assert [g["lr"] for g in restored.param_groups] == [pytest.approx(3e-5), 1e-3]
    assert "(optimizer 0 group 0: 0.0001 -> 3e-05)" in capsys.readouterr().out


def test_config_changes_name_what_a_resumed_run_changes():
    from translate.train.rundir import config_changes

    before = {"model": {"lr": 2e-4, "ngf": 64}, "trainer": {"max_epochs": 2}, "data": {"root": "/a"}}
    after = {"model": {"lr": 1e-4, "ngf": 64}, "trainer": {"max_epochs": 5}, "data": {"root": "/b", "new": 1}}
    assert config_changes(before, after) == ["data.new: None -> 1", "data.root: '/a' -> '/b'",
                                             "model.lr: 0.0002 -> 0.0001"]
    assert config_changes(before, before) == []
