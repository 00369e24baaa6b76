"""Build Lightning objects from a RunConfig and run them: what each CLI subcommand does, as plain functions."""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from datamodules import build_datamodule
from translate.deploy.checkpoints import CheckpointError, load_checkpoint
from translate.train.config import ConfigError, RunConfig, load_config, schedule_mismatch, to_dict
from translate.methods.interface import TRANSLATOR, Method
from translate.methods.registry import METHODS
from translate.train.tracking import build_loggers
from translate.train.callbacks import (AtomicCheckpointIO, ConfigLearningRates, CtrlCStopsAfterMinibatch,
                                       DropReplacedRun, RankSeed, RefuseNonFiniteWeights, RunCheckpoint,
                                       StoreRunConfig, TrainingRandomState, TrainingStopped, WriteRunConfig,
                                       frozen_modules_expected)
from translate.train.rundir import (CHECKPOINT_DIR, _first_process, _put_back, check_resume_limits, check_run_dir,
                                    recover_replaced, resolve_resume, resume_summary)


def fit_sizes(cfg: RunConfig, module) -> RunConfig:
    """Images the data module makes must suit the generators (a U-Net of 8 levels takes multiples of 256). With
    data.preprocess none/scale_width, data.size_multiple is raised to the generators' multiple;
    a crop_size that does not fit is an error naming the key, before anything trains."""
    need = max((m.size_multiple for m in module.modules() if isinstance(getattr(m, "size_multiple", None), int)),
               default=1)
    d = cfg.data
    if need <= 1 or d.kind in ("synthetic", "synthetic_unpaired", "toyfaces"):
        return cfg  # generated sets are made at a fixed size the sets check themselves
    if d.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
        if d.crop_size % need:
            raise ConfigError(f"data.crop_size is {d.crop_size}, but the generator takes image sides divisible by "
                              f"{need}: set data.crop_size to a multiple of {need}")
        return cfg
    if d.size_multiple % need == 0:
        return cfg
    # images whose sides are not multiples are resized to the nearest one, said once when it happens
    # (datamodules.transforms.RoundToMultiple): nothing to say for images that already fit
    return replace(cfg, data=replace(d, size_multiple=math.lcm(d.size_multiple, need)))


def build_module(cfg: RunConfig) -> Method:
    return METHODS[cfg.method].from_config(cfg.model, cfg.data)


def _strategy(name: str, method: str = ""):
    # GANs call D in several backward passes per step, and G is idle during D's: DDP must allow unused parameters.
    # The StyleGAN2 prior keeps its buffers (path-length mean, w_avg) per process, as NVIDIA's training loop does;
    # the other methods take rank 0's (batch-norm statistics).
    if name in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook"):
        start = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}[name]
        return DDPStrategy(find_unused_parameters=True, start_method=start, broadcast_buffers=method != "stylegan2")
    return name


def build_trainer(cfg: RunConfig, run_dir: Path, *, for_fit: bool = True,
                  resume_step: Optional[int] = None) -> pl.Trainer:
    t = cfg.trainer
    callbacks: List[Callback] = [StoreRunConfig(to_dict(cfg)), RankSeed(cfg.seed, resume_step),
                                   TrainingRandomState(), ConfigLearningRates()]
    if t.enable_progress_bar:
        callbacks.append(RichProgressBar(leave=True))
    if for_fit:
        c = cfg.checkpoint
        if c.mode not in ("max", "min"):
            raise ConfigError(f"checkpoint.mode: expected 'max' or 'min', got '{c.mode}'", key="checkpoint.mode")
        if c.keep_every_n_train_steps is not None and c.keep_every_n_train_steps < 1:
            raise ConfigError(f"checkpoint.keep_every_n_train_steps: expected a number of minibatches >= 1 or null, "
                              f"got {c.keep_every_n_train_steps}", key="checkpoint.keep_every_n_train_steps")
        folder = run_dir / CHECKPOINT_DIR
        if c.monitor:  # the best by a metric: Lightning's ModelCheckpoint, saving after validation
            callbacks.append(ModelCheckpoint(
                dirpath=folder, filename="best-{epoch:03d}-{step}", monitor=c.monitor, mode=c.mode,
                save_top_k=c.save_top_k, every_n_epochs=c.every_n_epochs, auto_insert_metric_name=False,
                enable_version_counter=False))
        # last.ckpt every N minibatches (or epochs), at the end and when SIGTERM/Ctrl-C stops the run
        callbacks.append(RunCheckpoint(folder, "last.ckpt", every_n_minibatches=c.every_n_train_steps,
                                       every_n_epochs=c.every_n_epochs, at_end=True))
        if c.keep_every_n_train_steps is not None:  # snapshots, all kept (pSp's iteration_N.pt, NVIDIA's snapshots)
            callbacks.append(RunCheckpoint(folder, "step-{step:07d}.ckpt",
                                           every_n_minibatches=c.keep_every_n_train_steps))
        callbacks.append(RefuseNonFiniteWeights(folder))
    kwargs = {k: v for k, v in asdict(t).items() if v is not None or k == "check_val_every_n_epoch"}
    kwargs["strategy"] = _strategy(t.strategy, cfg.method)
    return pl.Trainer(
        **kwargs, default_root_dir=str(run_dir), callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        logger=build_loggers(cfg.logger, run_dir, to_dict(cfg), resume_step) if for_fit else False,
    )


def configure_tracking(module, cfg: RunConfig, run_dir: Path) -> None:
    module.image_every_n_steps = cfg.logger.image_every_n_steps
    module.n_images = cfg.logger.n_images
    module.image_dir = run_dir / "images"
    module.checkpoint_monitor = cfg.checkpoint.monitor


def check_validation_data(cfg: RunConfig, datamodule) -> str:
    """Reads the data's file lists (a data error shows before the run writes anything) and says which images
    validate. A best checkpoint is never picked by a metric measured on the training images."""
    source = datamodule.validation_source()
    monitor = cfg.checkpoint.monitor
    if datamodule.validates_on_training_data() and monitor and monitor.startswith("val/"):
        raise ConfigError(f"checkpoint.monitor '{monitor}' would pick the best checkpoint on the training images "
                          f"(validation: {source}): hold images out (data.val_fraction > 0, or {cfg.data.val_split}/ "
                          f"split folders), or set checkpoint.monitor=null to keep only last.ckpt")
    return f"validation: {source}"


def fit(cfg: RunConfig, resume: Optional[str] = None, overwrite: bool = False) -> Tuple[pl.Trainer, Any]:
    """Train. A run_dir with checkpoints of an earlier run needs `resume` (continue) or `overwrite` (start over).
    Everything that can be checked (the resume against the epoch limit, the data) is checked before the run's
    files are written; config.yaml is written as training starts. SIGTERM and Ctrl-C stop after a minibatch with
    last.ckpt saved, raising TrainingStopped."""
    run_dir = Path(cfg.run_dir)
    recover_replaced(run_dir)
    ckpt_path, resume_step = resolve_resume(resume, run_dir, cfg.method, overwrite)
    if ckpt_path is not None:
        check_resume_limits(ckpt_path, cfg)
    stash = check_run_dir(run_dir, ckpt_path, overwrite)
    ctrl_c = CtrlCStopsAfterMinibatch()
    try:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build_datamodule(cfg.data, seed=cfg.seed)
        module = build_module(cfg)
        sized = fit_sizes(cfg, module)
        if sized is not cfg:
            cfg, datamodule = sized, build_datamodule(sized.data, seed=cfg.seed)
        validation = check_validation_data(cfg, datamodule)
        if _first_process():
            mismatch = schedule_mismatch(cfg)
            if mismatch:
                warnings.warn(mismatch, UserWarning, stacklevel=2)
            print(validation)
            if ckpt_path is not None:
                print(resume_summary(ckpt_path, to_dict(cfg)))  # the config as trained, data sizes fitted
        trainer = build_trainer(cfg, run_dir, resume_step=resume_step)
        trainer.callbacks.extend([WriteRunConfig(run_dir, cfg), ctrl_c])
        if stash is not None:
            trainer.callbacks.append(DropReplacedRun(stash))
        configure_tracking(module, cfg, run_dir)
        with frozen_modules_expected(module), warnings.catch_warnings():
            if ckpt_path is not None:  # the checkpoint folder holds the run being continued (check_run_dir)
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except BaseException as e:
        if stash is not None:
            _put_back(stash, run_dir)
        if isinstance(e, SIGTERMException):  # Lightning's, a SystemExit with status 0: say how it stopped
            raise (TrainingStopped("Ctrl-C", 130) if ctrl_c.pressed else TrainingStopped("SIGTERM", 143)) from e
        raise
    return trainer, module


def load_run(ckpt: str | Path, files: Sequence[str] = (), overrides: Sequence[str] = ()) -> Tuple[RunConfig, Method]:
    """A trained module and its run config from a checkpoint (config files/overrides are applied on top)."""
    state = load_checkpoint(ckpt)
    if not isinstance(state, dict) or "run_config" not in state:
        raise CheckpointError(f"{ckpt}: not a checkpoint written by this framework (no 'run_config' entry)")
    cfg = load_config(files, overrides, base=state["run_config"])
    # files that only initialise weights (pSp's encoder_weights, discriminator_weights) are not read again: the
    # checkpoint holds what was trained from them, and the files need not exist where the checkpoint is used
    init_only = METHODS[cfg.method].init_only_keys
    module = build_module(replace(cfg, model=replace(cfg.model, **{k: None for k in init_only})))
    module.load_state_dict(state["state_dict"], strict=True)
    return cfg, module


def evaluate(stage: str, ckpt: str | Path, files: Sequence[str] = (), overrides: Sequence[str] = (),
             save_images: Optional[str | Path] = None) -> List[Dict]:
    """`validate` or `test` a checkpoint on its data (or the data given by config/overrides).

    save_images: a new or empty folder; every sample's images are written there as <kind>/<stem>.png (input/,
    output/, target/; CycleGAN: real_A/, fake_B/, rec_A/, real_B/, fake_A/, rec_B/), as the reference test scripts
    write their results."""
    cfg, module = load_run(ckpt, files, overrides)
    if save_images is not None:
        if module.exports != TRANSLATOR:
            raise ConfigError(f"--save-images: method '{cfg.method}' does not translate images", key="--save-images")
        module.save_images_dir = _check_image_folder(Path(save_images), cfg.data.root)
    run_dir = Path(cfg.run_dir)
    configure_tracking(module, cfg, run_dir)
    module.image_every_n_steps = 0
    trainer = build_trainer(cfg, run_dir, for_fit=False)
    datamodule = build_datamodule(cfg.data)
    run = trainer.validate if stage == "validate" else trainer.test
    return run(module, datamodule=datamodule, verbose=True)


def _check_image_folder(folder: Path, data_root: Optional[str]) -> Path:
    """`--save-images` must not write into the data (where it could be read back as data) nor mix with the images
    of an earlier run (checked on rank 0 only: the other DDP processes start once it may be writing)."""
    if data_root and (folder.resolve() == Path(data_root).resolve()
                      or Path(data_root).resolve() in folder.resolve().parents):
        raise ConfigError(f"--save-images {folder}: refusing to write into the data folder {data_root}",
                          key="--save-images")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--save-images {folder}: is a file; expected a new or empty folder", key="--save-images")
    if rank_zero_only.rank == 0 and folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"--save-images {folder}: expected a new or empty folder (images of two runs would mix)",
                          key="--save-images")
    return folder


def export(ckpt: str | Path, out: str | Path, files: Sequence[str] = (), overrides: Sequence[str] = (),
           overwrite: bool = False, direction: Optional[str] = None) -> Path:
    """Export a trained translator to a bundle (ONNX + torch.export program + safetensors + translator.json).

    direction: for methods with one translator per direction (`Method.export_directions`, e.g. CycleGAN's G_A
    "AtoB" and G_B "BtoA"): which one, or "both" for one bundle each in `out/AtoB` and `out/BtoA`; None = the
    method's default.
    """
    cfg, module = load_run(ckpt, files, overrides)
    if module.exports != TRANSLATOR:  # a method whose artefact is not a translator bundle (stylegan2: a prior)
        if direction is not None:
            raise ConfigError(f"--direction {direction}: method '{cfg.method}' exports no translator; leave it out",
                              key="--direction")
        return module.export_to(out, overwrite=overwrite)
    choices = module.export_directions
    if direction is not None and not choices:
        raise ConfigError(f"--direction {direction}: method '{cfg.method}' exports a single translator (its direction "
                          f"is data.direction); leave --direction out", key="--direction")
    if direction is not None and direction not in (*choices, "both"):
        raise ConfigError(f"--direction: expected one of {[*choices, 'both']}, got '{direction}'", key="--direction")
    targets = {d: Path(out) / d for d in choices} if direction == "both" else {direction: Path(out)}
    from translate.deploy.export import check_destination

    for path in targets.values():  # all or nothing: every destination is checked before the first is written
        check_destination(path, overwrite)
    for d, path in targets.items():
        net, meta = module.export_spec(d) if d is not None else module.export_spec()
        meta["label_nc"] = int(cfg.data.label_nc)  # > 0: the net takes one-hot label maps (predict reads indices)
        meta["run_config"] = to_dict(cfg)
        export_with_config(net, meta, path, cfg, overwrite=overwrite)
    return Path(out)


def export_with_config(net, meta: Dict[str, Any], out: str | Path, cfg: RunConfig, overwrite: bool = False) -> Path:
    from translate.deploy.export import export_bundle

    e = cfg.export
    mult = int(meta["size_multiple"])
    size = e.example_size or cfg.data.crop_size
    size = max(mult, (size // mult) * mult)
    dynamic_spatial = e.dynamic_spatial
    if meta.get("input_size"):  # a net that takes one input size only (pSp's encoder heads are sized for it)
        size, dynamic_spatial = int(meta["input_size"]), False
    example = torch.rand(1, meta["input_nc"], size, size) * 2 - 1
    return export_bundle(net, out, meta, example, dynamic_batch=e.dynamic_batch, dynamic_spatial=dynamic_spatial,
                         size_multiple=mult, opset=e.opset, atol=e.atol, overwrite=overwrite)
