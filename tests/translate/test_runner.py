"""translate/runner.py: behaviour not covered through the CLI tests."""
import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from translate.base import FrozenParts
from translate.config import load_config
from translate.methods import METHODS
from translate.runner import build_module, frozen_modules_expected, undeclared_eval_modules


class TinyModule(FrozenParts, pl.LightningModule):
    """One trained layer and one kept in eval mode, declared frozen or kept so by hand."""

    def __init__(self, declared: bool):
        super().__init__()
        self.trained = nn.Linear(2, 2)
        self.prior = nn.Sequential(nn.Linear(2, 2)).eval().requires_grad_(False)
        self.frozen_modules = ("prior",) if declared else ()

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.frozen_modules:  # FrozenParts does not know it: keep it in eval mode by hand
            self.prior.eval()
        return self

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
