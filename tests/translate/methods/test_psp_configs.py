"""Every pSp paper config trains as shipped, scaled down only in size: the weight files in their published layouts
(tiny widths), data folders on disk, and the configs' own schedule (validation every N steps across epochs)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from translate.train import runner
from translate.train.config import load_config

SIZE = 64  # frontalization's crop LPIPS needs a 31-px inner-face crop: a 42-px or larger output
TASKS = {
    "encode": [],
    "super_resolution": ["data.degradation.factors=[1,2,4,8]"],  # x16 and up mirror more than 64 px
    "sketch_to_face": [],
    "frontalization": [],
    "seg_to_face": [],
    # a VGG16 file is 58 MB; two batches are four optimizer steps (encoder and discriminator)
    "domain_guided": ["model.lpips_weights=random", "model.lpips_backbone=unused", "trainer.max_steps=4"],
    # two batches (encoder and latent discriminator steps): w0 alone, then the first delta
    "e4e_encode": ["model.progressive_start=1", "model.progressive_step_every=1", "trainer.max_steps=4"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 64-px prior, model_ir_se50.pth (ArcFace in TreB1eN's layout, the encoder's widths), the LPIPS AlexNet
    backbone and heads, a folder of faces (root/train, root/test) and one of label map / face pairs."""
    from datamodules.toyfaces import write_toyfaces
    from nets.encoders import ArcFace
    from nets.perceptual import LPIPS, lpips_head_state_dict, torchvision_backbone_state_dict
    from priors.loaders import save_prior
    from priors.stylegan2 import Generator, GeneratorConfig

    root = tmp_path_factory.mktemp("psp_configs")
    torch.manual_seed(0)
    save_prior(Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=SIZE, channel_base=256, channel_max=16,
                                         mapping_layers=2)), root / "prior")
    torch.save(ArcFace(channels=(4, 8, 8, 16)).state_dict(), root / "model_ir_se50.pth")
    lpips = LPIPS("alex")
    torch.save(torchvision_backbone_state_dict(lpips), root / "alexnet.pth")
    torch.save(lpips_head_state_dict(lpips), root / "alex.pth")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        faces = write_toyfaces(root / "tmp" / split, n=n, size=SIZE, split=split) / "images"
        shutil.copytree(faces, root / "faces" / split)
        (root / "seg" / split / "A").mkdir(parents=True)
        shutil.copytree(faces, root / "seg" / split / "B")
        for f in sorted(faces.iterdir()):
            Image.fromarray(rng.integers(0, 19, (SIZE, SIZE), dtype=np.uint8), mode="L").save(
                root / "seg" / split / "A" / f.name)
    return root


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
@pytest.mark.parametrize("task", sorted(TASKS))
def test_paper_config_trains_and_validates(task, files, tmp_path):
    data = files / ("seg" if task == "seg_to_face" else "faces")
    cfg = load_config([Path(f"configs/psp/{task}.yaml")], [
        f"model.prior={files / 'prior'}", f"model.encoder_weights={files / 'model_ir_se50.pth'}",
        f"model.lpips_backbone={files / 'alexnet.pth'}", f"model.lpips_weights={files / 'alex.pth'}",
        "model.channels=[4,8,8,16]", f"model.input_size={SIZE}", f"model.loss_size={SIZE}", f"data.root={data}",
        f"data.load_size={SIZE}", f"data.crop_size={SIZE}", "data.batch_size=2", "data.num_workers=0",
        "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", "logger.wandb.mode=disabled", "logger.image_every_n_steps=0",
        f"run_dir={tmp_path / 'run'}", *TASKS[task]])
    assert isinstance(cfg.trainer.val_check_interval, int)  # steps, as Lightning needs with check_val_every_n_epoch
    trainer, module = runner.fit(cfg)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["val/psnr"]), sorted(metrics)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert trainer.global_step == (4 if task in ("domain_guided", "e4e_encode") else 2)
    if task == "e4e_encode":
        assert module.net.encoder.progressive_stage == 2 and torch.isfinite(metrics["train/D_w_r1"])


def test_schedule_keys_keep_integers_and_fractions():
    """Lightning reads an int as a number of batches and a float as a fraction of an epoch: 1 and 1.0 differ."""
    cfg = load_config([], ["trainer.val_check_interval=2500", "trainer.limit_val_batches=1",
                           "trainer.limit_train_batches=0.25"])
    t = cfg.trainer
    assert (t.val_check_interval, t.limit_val_batches, t.limit_train_batches) == (2500, 1, 0.25)
    assert isinstance(t.val_check_interval, int) and isinstance(t.limit_val_batches, int)
    assert isinstance(load_config([], ["trainer.limit_val_batches=1.0"]).trainer.limit_val_batches, float)


def test_loss_sizes_too_small_for_lpips_are_config_errors(tmp_path):
    """Found before training starts, naming the key: the 24-px crop of a 32-px output is too small for LPIPS."""
    from translate.methods.psp import PSPConfig, check_config

    with pytest.raises(ValueError, match=r"model.lpips_lambda_crop: the inner-face crop of a 32-px output is 24x24"):
        check_config(PSPConfig(prior="p", loss_size=32, lpips_lambda_crop=0.8))
    with pytest.raises(ValueError, match=r"model.loss_size 16 is smaller than LPIPS \(alex\) takes \(31 px\)"):
        check_config(PSPConfig(prior="p", loss_size=16, lpips_lambda=0.8))
    check_config(PSPConfig(prior="p", loss_size=16, lpips_lambda=0.8, lpips_net="vgg"))
    assert isinstance(load_config([], ["trainer.limit_val_batches=1.0"]).trainer.limit_val_batches, float)
