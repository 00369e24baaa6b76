"""Helpers shared by the method tests (fixtures, so that test files need no imports from each other)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.torch_version import TorchVersion

from tests.helpers.psp_checkpoints import load_ros

ROOT = Path(__file__).resolve().parents[2]
JUNYANZ = os.path.join(os.path.dirname(__file__), "..", "data", "junyanz")


def load_junyanz_golden(name):
    """A golden file of the reference pix2pix/CycleGAN code (its config records the torch version it ran under)."""
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(os.path.join(JUNYANZ, name), weights_only=True)


def biases_before_instance_norm(net):
    """State-dict keys of conv biases that an InstanceNorm follows: the norm subtracts each channel's mean, so their
    gradient is zero in exact arithmetic and Adam's first step moves them by lr * sign(rounding noise)."""
    keys = set()
    for prefix, module in net.named_modules():
        if isinstance(module, nn.Sequential):
            for i, (layer, after) in enumerate(zip(module, list(module)[1:])):
                if isinstance(layer, nn.modules.conv._ConvNd) and layer.bias is not None \
                        and isinstance(after, nn.InstanceNorm2d):
                    keys.add(f"{prefix}.{i}.bias" if prefix else f"{i}.bias")
    return keys


def assert_first_adam_step_matches(ours, ref, lr, name, atol=1e-5, max_fraction=1e-5, noise_keys=()):
    """The state dict `ours` after one Adam step equals the reference's `ref` to `atol`, but for Adam's sign flips.

    Adam's first step moves every weight by about lr * sign(grad): where a gradient is tiny next to the others (a
    near-cancellation; L1 terms flip their sign at residuals near zero), the last-bit differences between CPUs'
    conv kernels flip the step. Such weights may differ by up to 2 lr, and at most `max_fraction` of the weights
    may differ by more than `atol`; any real difference moves far more of them. `noise_keys` (see
    `biases_before_instance_norm`) have no gradient at all: they are only held to the 2 lr bound.
    """
    assert set(ours) == set(ref), f"{name}: keys differ"
    assert set(noise_keys) <= set(ref), f"{name}: unknown noise keys {sorted(set(noise_keys) - set(ref))}"
    off = total = 0
    for k, v in ref.items():
        diff = (ours[k].float() - v.float()).abs()
        assert diff.max().item() <= 2 * lr + 1e-6, f"{name}.{k}: differs by {diff.max().item():.3g} > 2 lr"
        if k in noise_keys:
            continue
        off += int((diff > atol).sum())
        total += diff.numel()
    assert off <= total * max_fraction, \
        f"{name}: {off} of {total} weights differ from the reference by more than {atol}"


@pytest.fixture
def junyanz_golden():
    return load_junyanz_golden


@pytest.fixture
def adam_step_matches():
    return assert_first_adam_step_matches


@pytest.fixture(name="biases_before_instance_norm")
def _biases_before_instance_norm():
    return biases_before_instance_norm


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    """A tiny StyleGAN2 prior (32 px, w_dim 16, 8 style vectors) saved in our prior format, for the pSp tests."""
    from priors.loaders import save_prior
    from priors.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, channel_base=256, channel_max=16,
                                  mapping_layers=2))
    G.mapping.w_avg.normal_()
    return save_prior(G, tmp_path_factory.mktemp("prior") / "toy")


@pytest.fixture(scope="session")
def sg3_prior(tmp_path_factory):
    """A tiny StyleGAN3-T prior (32 px, w_dim 16, 3 layers + ToRGB: 5 style vectors) saved in our prior format."""
    from priors.loaders import save_prior
    from priors.stylegan3 import Generator, GeneratorConfig

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, channel_base=128, channel_max=8,
                                  num_layers=3, num_critical=1, margin_size=2))
    G.mapping.w_avg.normal_()
    return save_prior(G, tmp_path_factory.mktemp("sg3_prior") / "toy")


# what every tiny pSp run in these tests shares: small nets at 32 px, on the CPU, quiet
TINY_PSP_RUN = ["method=psp", "model.channels=[4,8,8,16]", "model.input_size=32", "model.loss_size=32",
                "data.preprocess=none", "data.num_workers=0", "trainer.accelerator=cpu",
                "trainer.enable_progress_bar=false", "logger.image_every_n_steps=0", "logger.wandb.mode=disabled"]


@pytest.fixture(scope="session")
def tiny_psp_config():
    """(prior, run_dir, *overrides) -> the RunConfig of a tiny pSp run on the CPU (TINY_PSP_RUN + the overrides)."""
    from translate.train.config import load_config

    def make(prior, run_dir, *extra):
        return load_config([], [*TINY_PSP_RUN, f"model.prior={prior}", f"run_dir={run_dir}", *extra])

    return make


@pytest.fixture(scope="session")
def tiny_psp_overrides():
    """TINY_PSP_RUN, for runs through the CLI."""
    return list(TINY_PSP_RUN)


def cli_process(*args: str, **popen) -> subprocess.Popen:
    """`python cli.py *args` in a child process on one thread each (DDP and kill tests), output in .stdout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


@pytest.fixture(name="cli_process")
def _cli_process():
    return cli_process


@pytest.fixture(name="fit_ddp")
def _fit_ddp():
    """(run_dir, *cli args) -> the last checkpoint of `cli.py fit` under DDP with two CPU processes (one epoch
    unless the args say otherwise)."""
    from translate.deploy.checkpoints import load_checkpoint

    def fit(run_dir, *args):
        p = cli_process("fit", *args, f"run_dir={run_dir}", "trainer.strategy=ddp", "trainer.devices=2")
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
        assert "not resumable" not in out  # Lightning's warning for a loader that restarts its epoch
        return load_checkpoint(Path(run_dir) / "checkpoints" / "last.ckpt")

    return fit


@pytest.fixture(scope="module")
def ros():
    """The tiny rosinality StyleGAN2 checkpoint (g_ema, latent_avg) that the pSp test checkpoints decode with."""
    return load_ros()
