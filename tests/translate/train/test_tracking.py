import pytest
import torch
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from translate.train.config import LoggerConfig, WandbConfig
from translate.methods.images import image_grid, log_images
from translate.train.tracking import build_loggers


def test_image_grid_layout_and_range():
    rows = [torch.full((3, 1, 8, 8), -1.0), torch.zeros(3, 3, 8, 8), torch.ones(3, 3, 8, 8)]
    grid = image_grid(rows, n=2)
    assert grid.shape == (3, 2 * 8 + 3 * 2, 3 * 8 + 4 * 2)  # 2 samples x 3 columns, padding 2
    assert grid.min() >= 0 and grid.max() <= 1
    assert torch.all(grid[:, 2:10, 2:10] == 0)  # first column: gray input expanded to RGB, -1 -> black
    assert torch.all(grid[:, 2:10, 22:30] == 1)  # third column: +1 -> white


def test_image_grid_shows_one_hot_label_maps_in_class_colours():
    """Segmentation inputs (one-hot, label_nc channels) appear in the VOC colours of their classes, not as their
    first three channels; other multi-channel images keep the old first-three-channels view."""
    from datamodules.io import label_palette

    classes = torch.tensor([[0, 1], [4, 2]]).repeat_interleave(4, 0).repeat_interleave(4, 1)  # 8x8, 4x4 blocks
    one_hot = torch.nn.functional.one_hot(classes, 5).permute(2, 0, 1)[None].float()
    grid = image_grid([one_hot, torch.zeros(1, 3, 8, 8)], n=1)
    colour = lambda c: torch.from_numpy(label_palette(5)[c]).float()[:, None, None] / 255  # noqa: E731
    assert torch.allclose(grid[:, 2:6, 2:6], colour(0).expand(3, 4, 4), atol=1e-6)
    assert torch.allclose(grid[:, 6:10, 2:6], colour(4).expand(3, 4, 4), atol=1e-6)  # class 4: blue, not black
    assert torch.allclose(grid[:, 6:10, 6:10], colour(2).expand(3, 4, 4), atol=1e-6)
    four = torch.rand(1, 4, 8, 8) * 2 - 1  # e.g. RGB + mask: not one-hot
    assert torch.allclose(image_grid([four, four], n=1)[:, 2:10, 2:10], (four[0, :3] + 1) / 2)


def test_csv_logging_saves_png(tmp_path):
    (csv,) = build_loggers(LoggerConfig(wandb=WandbConfig(mode="disabled")), tmp_path, {"a": 1})
    assert isinstance(csv, CSVLogger)
    path = log_images([csv], "val/images", [torch.zeros(2, 3, 8, 8)] * 3, step=7, image_dir=tmp_path / "img")
    assert path.name == "val_images_0000007.png" and path.is_file()


def test_wandb_offline_gets_config_and_images(tmp_path):
    loggers = build_loggers(LoggerConfig(), tmp_path, {"model": {"ngf": 8}})
    wandb_logger = next(lg for lg in loggers if isinstance(lg, WandbLogger))
    run = wandb_logger.experiment
    try:
        assert run.config["model"]["ngf"] == 8
        assert run.settings.mode in ("offline", "dryrun")  # wandb calls offline mode "dryrun" internally
        log_images(loggers, "train/images", [torch.zeros(1, 3, 8, 8)] * 3, step=1)
    finally:
        run.finish()
    assert list(tmp_path.glob("wandb/offline-run-*"))


def test_bad_wandb_mode():
    with pytest.raises(ValueError, match="logger.wandb.mode"):
        build_loggers(LoggerConfig(wandb=WandbConfig(mode="sometimes")), None, {})


@pytest.mark.parametrize("rows", [None, ["5"], ["1", "2", "5"]], ids=["no metrics yet", "all after", "some after"])
def test_resumed_csv_keeps_rows_up_to_the_checkpoint_without_a_deletion_warning(tmp_path, rows, recwarn):
    from translate.train.tracking import RunCSVLogger

    log_dir = tmp_path / "csv"
    log_dir.mkdir()
    (log_dir / "hparams.yaml").write_text("a: 1\n")  # a directory that is not empty, as after any earlier fit
    if rows is not None:
        (log_dir / "metrics.csv").write_text("loss,step\n" + "".join(f"0.{s},{s}\n" for s in rows))
    logger = RunCSVLogger(tmp_path, resume_step=2)
    logger.log_metrics({"loss": 0.3}, step=3)
    logger.save()
    assert not [w for w in recwarn if "will be deleted" in str(w.message)]
    lines = (log_dir / "metrics.csv").read_text().splitlines()
    assert lines[0] == "loss,step"
    assert lines[1:] == [f"0.{s},{s}" for s in (rows or []) if int(s) <= 2] + ["0.3,3"]
