"""Build Lightning objects from a RunConfig and run them: what each CLI subcommand does, as plain functions."""
from __future__ import annotations

import math
import os
import random
import shutil
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.warnings import PossibleUserWarning

from datamodules import build_datamodule
from translate.deploy.checkpoints import CheckpointError, atomic_torch_save, load_checkpoint
from translate.train.config import ConfigError, RunConfig, load_config, schedule_mismatch, to_dict, to_yaml
from translate.methods.registry import METHODS
from translate.train.tracking import build_loggers

CHECKPOINT_DIR = "checkpoints"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic local writes, weights-only reads."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Optional[bool] = None) -> Dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu")


class StoreRunConfig(Callback):
    """Keeps the resolved run config (a plain dict) in every checkpoint, so validate/export need no YAML."""

    def __init__(self, run_config: Dict[str, Any]):
        self.run_config = run_config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        checkpoint["run_config"] = self.run_config


class RankSeed(Callback):
    """Under DDP every process draws its own random numbers (latents, noise, dropout, augmentations, image pools):
    the seed becomes `seed * world_size + rank`, as in NVIDIA's StyleGAN2 training loop, instead of every process
    repeating rank 0's draws. The nets were initialised from the plain seed before this, and DDP starts every process
    from rank 0's weights anyway; one process keeps the plain seed. A resumed run mixes in the step it resumes from,
    so it does not replay the draws of the run's start (a single process resuming a checkpoint without saved
    generators, e.g. one written under DDP, included)."""

    def __init__(self, seed: int, resume_step: Optional[int] = None):
        self.seed = seed
        self.resume_step = resume_step

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.world_size > 1 or self.resume_step:
            seed = self.seed * trainer.world_size + trainer.global_rank
            if self.resume_step:  # (one process: TrainingRandomState then restores the generators, if saved)
                seed = int(np.random.SeedSequence([seed, self.resume_step]).generate_state(1)[0])
            torch.manual_seed(seed)  # all devices too
            np.random.seed(seed % 2**32)
            random.seed(seed)


def random_state() -> Dict[str, Any]:
    """torch's (CPU and every initialised GPU), numpy's and Python's generators, in types a weights_only load reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainingRandomState(Callback):
    """The random draws of training (dropout, noise, latents, augmentations) do not depend on validation or on
    interruptions:
    - validation during fit draws from the generators as they stand and then puts them back, so how often it runs
      (and Lightning skipping one after a resume) changes nothing in training;
    - a single-process run keeps its generators in every checkpoint, and a resumed run continues from them. With the
      training order resumed by datamodules.sampling and data.num_workers=0, a resumed CPU run repeats the
      uninterrupted one exactly. They are put back as training starts, after Lightning has set up the data and run
      its sanity check. Under DDP each process has its own generators and only rank 0's reach the checkpoint:
      RankSeed reseeds instead."""

    key = "random_state"

    def __init__(self) -> None:
        self.saved: Optional[Dict[str, Any]] = None
        self.before_validation: Optional[Dict[str, Any]] = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        if trainer.world_size == 1:
            checkpoint[self.key] = self.before_validation or random_state()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        self.saved = checkpoint.get(self.key)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.saved is not None and trainer.world_size == 1:
            set_random_state(self.saved)
        self.saved = None

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":  # validation during fit (not `validate`)
            self.before_validation = random_state()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.before_validation is not None:
            set_random_state(self.before_validation)
            self.before_validation = None


def _optimizers_and_schedulers(configured) -> Tuple[List[torch.optim.Optimizer], List[Any]]:
    """What configure_optimizers returned (one optimizer, a list, or (optimizers, schedulers)) as two lists."""
    if isinstance(configured, torch.optim.Optimizer):
        return [configured], []
    if isinstance(configured, tuple) and len(configured) == 2 and isinstance(configured[0], (list, tuple)):
        return list(configured[0]), list(configured[1])
    return list(configured), []


class ConfigLearningRates(Callback):
    """A resumed run trains at the learning rates and LR schedule of its config, as the reference's
    `--continue_train` does, not at the ones in the checkpoint (which Lightning restores with the optimizer and
    scheduler states): a run continued with a lower model.lr after it diverged does train slower, and one whose
    model.n_epochs_decay was raised decays over the longer span. The optimizers' moments and the schedule's position
    (its epoch) are kept. The methods' schedules are LambdaLR (translate.methods.schedules) or none."""

    def __init__(self) -> None:
        self.resumed = False

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        self.resumed = True

    def on_train_start(self, trainer, pl_module) -> None:
        if not self.resumed:
            return
        self.resumed = False
        fresh_opts, fresh_scheds = _optimizers_and_schedulers(pl_module.configure_optimizers())  # as a fresh run
        restored_scheds = [c.scheduler for c in trainer.lr_scheduler_configs]
        changed = []
        for i, (opt, new) in enumerate(zip(trainer.optimizers, fresh_opts)):
            before = [g["lr"] for g in opt.param_groups]
            sched = next((s for s in restored_scheds if s.optimizer is opt), None)
            new_sched = next((s for s in fresh_scheds if s.optimizer is new), None)
            bases = [g.get("initial_lr", g["lr"]) for g in new.param_groups]  # the config's rates before any schedule
            if isinstance(sched, LambdaLR) and isinstance(new_sched, LambdaLR):
                sched.lr_lambdas, sched.base_lrs = new_sched.lr_lambdas, list(bases)
                for group, base, factor in zip(opt.param_groups, bases, new_sched.lr_lambdas):
                    group["initial_lr"], group["lr"] = base, base * factor(sched.last_epoch)
                sched._last_lr = [g["lr"] for g in opt.param_groups]
            elif sched is None:
                for group, base in zip(opt.param_groups, bases):
                    group["lr"] = base
            changed += [f"optimizer {i}{f' group {j}' if len(before) > 1 else ''}: {old:g} -> {g['lr']:g}"
                        for j, (old, g) in enumerate(zip(before, opt.param_groups))
                        if not math.isclose(old, g["lr"], rel_tol=1e-9, abs_tol=1e-15)]
        if changed and trainer.is_global_zero:
            print(f"learning rates from the config, not the checkpoint ({'; '.join(changed)})")


class TrainingDiverged(RuntimeError):
    """Weights became NaN or inf; raised instead of writing them over the run's good checkpoints."""


class TrainingStopped(SIGTERMException):
    """SIGTERM or Ctrl-C stopped training after a minibatch, with last.ckpt saved there (`--resume last` goes on).
    `exit_status` is the shell's for the signal: 143 (SIGTERM), 130 (Ctrl-C)."""

    def __init__(self, by: str, exit_status: int):
        super().__init__(exit_status)
        self.by, self.exit_status = by, exit_status


class CtrlCStopsAfterMinibatch(Callback):
    """Ctrl-C while training is treated as SIGTERM (which RunCheckpoint saves at): the first one stops training after
    the current minibatch, saving last.ckpt there; a second one stops at once (Lightning's KeyboardInterrupt path,
    nothing saved). Before and after training, Ctrl-C is Python's usual KeyboardInterrupt."""

    def __init__(self) -> None:
        self.pressed = False
        self._before: Any = None

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():
            self._before = signal.signal(signal.SIGINT, self._first_ctrl_c)

    def _first_ctrl_c(self, signum, frame) -> None:
        self.pressed = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the second Ctrl-C interrupts at once
        print("\nCtrl-C: stopping after this minibatch and saving a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler: training stops after the minibatch

    def _restore(self) -> None:
        if self._before is not None:
            signal.signal(signal.SIGINT, self._before)
            self._before = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()


def non_finite_tensors(module: nn.Module) -> List[str]:
    """Names of the module's parameters and floating-point buffers holding NaN or inf (one host sync when none)."""
    tensors = [(n, t) for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_floating_point()]
    if not tensors or bool(torch.stack([torch.isfinite(t).all() for _, t in tensors]).all()):
        return []
    return [n for n, t in tensors if not bool(torch.isfinite(t).all())]


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `every_n_minibatches` counts training minibatches. Lightning's `every_n_train_steps`
    counts optimizer steps, which our methods take 2-4 of per minibatch (G, D, StyleGAN2's lazy regularisers), so its
    multiples would be hit irregularly or skipped. In that mode the epoch saves are off and the end of training saves
    too (`save_at_end`), so last.ckpt never lags behind a finished run."""

    def __init__(self, *, every_n_minibatches: Optional[int] = None, save_at_end: bool = False, resuming: bool = False,
                 key: Optional[str] = None, **kwargs: Any):
        if every_n_minibatches:
            kwargs.update(every_n_train_steps=None, every_n_epochs=0)
        super().__init__(**kwargs)
        self.every_n_minibatches = every_n_minibatches
        self.save_at_end = save_at_end
        self.resuming = resuming  # a fit that continues the run in dirpath (--resume)
        self.key = key  # told apart from callbacks with the same settings (Lightning keys their states by them)

    @property
    def state_key(self) -> str:
        return super().state_key if self.key is None else f"{super().state_key}[{self.key}]"

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not self.resuming:
            return super().setup(trainer, pl_module, stage)
        # the checkpoint folder holds the run being continued (a fresh fit never reaches a folder with an earlier
        # run's checkpoints, see check_run_dir), so Lightning's "exists and is not empty" is noise here
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            super().setup(trainer, pl_module, stage)

    def _save_now(self, trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and self.monitor not in candidates:
            self._defer_save_until_validation = True  # saved at the end of the next validation, as Lightning does
            return
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.every_n_minibatches:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        done = trainer.fit_loop.epoch_loop.batch_progress.total.processed  # this minibatch included
        if done % self.every_n_minibatches == 0 and not self._should_skip_saving_checkpoint(trainer):
            self._save_now(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if self.every_n_minibatches and self.save_at_end and not self._should_skip_saving_checkpoint(trainer):
            self._save_now(trainer)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        """A diverged run (NaN or inf weights) stops here with a clear error: the checkpoints it would overwrite are
        the last good state, which `--resume last` needs."""
        bad = non_finite_tensors(trainer.lightning_module)
        # every process decides alike (StyleGAN2 keeps some buffers per process), or the others would wait forever
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            bad = bad or ["a tensor of another process"]
            last = Path(self.dirpath) / "last.ckpt"
            kept = (f"{last} keeps step {load_checkpoint(last, mmap=True).get('global_step')}" if last.is_file()
                    else "no checkpoint was written before")
            more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
            raise TrainingDiverged(
                f"training diverged at step {trainer.global_step}: {bad[0]}{more} holds NaN or inf, so no checkpoint "
                f"was written ({kept}). Lower the learning rate, or train in trainer.precision=32 or bf16-mixed "
                f"instead of 16-mixed, then continue with --resume last")
        super()._save_checkpoint(trainer, filepath)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """SIGTERM (a preempted cloud machine, a scheduler's time limit, `kill`): Lightning stops after the current
        minibatch, and the last checkpoint is saved there, so `--resume` loses nothing. Other exceptions can come
        mid-step (between G's and D's updates): no checkpoint then."""
        if (self.save_at_end and isinstance(exception, SIGTERMException)
                and not self._should_skip_saving_checkpoint(trainer)):
            self._save_now(trainer)


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


def build_module(cfg: RunConfig):
    input_nc = cfg.data.label_nc or cfg.data.input_nc  # label maps arrive one-hot, a channel per class
    try:
        return METHODS[cfg.method].module_class(
            model=asdict(cfg.model), input_nc=input_nc, output_nc=cfg.data.output_nc, direction=cfg.data.direction
        )
    except ValueError as e:  # "netG: expected one of ..." from a net builder: say it is the config's model.netG
        key = str(e).split(":", 1)[0]
        if key in asdict(cfg.model) and not isinstance(e, ConfigError):
            raise ConfigError(f"model.{e}") from e
        raise


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
            raise ValueError(f"checkpoint.mode: expected 'max' or 'min', got '{c.mode}'")
        every = dict(every_n_epochs=c.every_n_epochs, every_n_minibatches=c.every_n_train_steps,
                     enable_version_counter=False, resuming=resume_step is not None)
        callbacks.append(RunCheckpoint(
            dirpath=run_dir / CHECKPOINT_DIR, filename="best-{epoch:03d}-{step}", monitor=c.monitor, mode=c.mode,
            save_top_k=c.save_top_k if c.monitor else 0, auto_insert_metric_name=False, **every,
        ))
        # last.ckpt has its own callback: Lightning's save_last rewrites it only when a best checkpoint was written
        # in the same step, so a metric that stops improving would leave it behind the run
        callbacks.append(RunCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename="last", monitor=None, save_top_k=1,
                                       save_on_train_epoch_end=True, save_at_end=True, **every))
        if c.keep_every_n_train_steps is not None:
            if c.keep_every_n_train_steps < 1:
                raise ConfigError(f"checkpoint.keep_every_n_train_steps: expected a number of minibatches >= 1 or "
                                  f"null, got {c.keep_every_n_train_steps}")
            callbacks.append(RunCheckpoint(  # snapshots, all kept (pSp's iteration_N.pt, NVIDIA's network snapshots)
                dirpath=run_dir / CHECKPOINT_DIR, filename="step-{step:07d}", monitor=None, save_top_k=-1,
                auto_insert_metric_name=False, every_n_minibatches=c.keep_every_n_train_steps,
                enable_version_counter=False, resuming=resume_step is not None, key="snapshots"))
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


HPC_CHECKPOINT = "hpc_ckpt_*.ckpt"  # what Lightning saves into run_dir when SLURM signals a requeue


def _step(path: Path) -> int:
    state = load_checkpoint(path, mmap=True)
    return int(state.get("global_step", 0)) if isinstance(state, dict) else -1


def newest_checkpoint(run_dir: Path) -> Optional[Path]:
    """The run's checkpoint with the most steps: checkpoints/last.ckpt, a best or snapshot checkpoint (saved after
    it, e.g. at a validation within the epoch), or a `hpc_ckpt_N.ckpt` that Lightning saved when SLURM asked the job
    to requeue. last.ckpt where steps tie; None if the run has none."""
    last = run_dir / CHECKPOINT_DIR / "last.ckpt"
    found = [p for p in [last] if p.is_file()]
    found += sorted(p for p in (run_dir / CHECKPOINT_DIR).glob("*.ckpt") if p != last)
    found += sorted(run_dir.glob(HPC_CHECKPOINT))
    return max(found, key=_step, default=None)


def _on_slurm() -> bool:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def resolve_resume(resume: Optional[str], run_dir: Path, method: Optional[str] = None,
                   overwrite: bool = False) -> Tuple[Optional[str], Optional[int]]:
    """The checkpoint `--resume` names and the global step it was saved at:
    - `last`: the run's last.ckpt; a path: that file;
    - `auto`: the run's newest checkpoint (`newest_checkpoint`) if it has one, else None (a fresh start), so one job
      script serves the first launch and every requeue;
    - nothing, in a SLURM job whose run_dir holds a requeue checkpoint: `auto`, as Lightning's auto-requeue expects
      (unless `overwrite`: starting over was asked for).
    A checkpoint of another method than the config's `method` is refused in one line (not a list of missing keys)."""
    if resume is None and not overwrite and _on_slurm() and any(run_dir.glob(HPC_CHECKPOINT)):
        resume = "auto"
    if resume is None:
        return None, None
    if resume == "auto":
        path = newest_checkpoint(run_dir)
        if path is None:
            return None, None
    else:
        path = run_dir / CHECKPOINT_DIR / "last.ckpt" if resume == "last" else Path(resume)
    if not path.is_file():
        raise CheckpointError(f"--resume {resume}: no checkpoint at {path}")
    state = load_checkpoint(path, mmap=True)  # Lightning reads it for real; only the entries are looked at here
    if not isinstance(state, dict) or "run_config" not in state or "state_dict" not in state:
        raise CheckpointError(f"--resume {resume}: {path} is not a training checkpoint written by this framework")
    theirs = (state["run_config"] or {}).get("method") if isinstance(state["run_config"], dict) else None
    if method is not None and theirs is not None and theirs != method:
        raise CheckpointError(f"--resume {resume}: {path} is a '{theirs}' run, but the config trains '{method}' "
                              f"(set method={theirs} and that run's config, or start a new run)")
    return str(path), int(state.get("global_step", 0))


def _flat(tree: Any, prefix: str = "") -> Dict[str, Any]:
    """{"model": {"lr": 1}} -> {"model.lr": 1}."""
    if isinstance(tree, dict) and tree:
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def config_changes(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    """`key: old -> new` for every option a resumed run changes, beyond how long it trains."""
    old, new = _flat(before), _flat(after)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and k != "run_dir" and not k.startswith(("trainer.max_", "trainer.min_"))]


def resume_summary(path: str, config: Optional[Dict[str, Any]] = None) -> str:
    """Where a `--resume` checkpoint continues: its step, and the training order's epoch and minibatch (or that the
    epoch, or the whole run, had finished); with the resumed run's config, also the options it changes from the
    checkpoint's run."""
    state = load_checkpoint(path, mmap=True)
    loaders = ((state.get("loops") or {}).get("fit_loop") or {}).get("state_dict", {}).get("combined_loader") or []
    step = state.get("global_step", 0)
    where = f"resuming {path} at step {step}"
    trained = ((state.get("run_config") or {}).get("trainer") or {})
    max_epochs, max_steps = trained.get("max_epochs", -1), trained.get("max_steps", -1)
    if not loaders:
        return where + " (the checkpoint does not say where in the data it stopped: its epoch starts over)" + (
            _changes_line(state, config))
    position = loaders[0]
    epoch, whole = position["epoch"], position.get("epoch_batches")
    ended = whole is not None and position["batches"] >= whole
    if max_steps not in (None, -1) and step >= max_steps:
        where += f": the run had finished (trainer.max_steps={max_steps} reached); "
    elif ended and max_epochs not in (None, -1) and epoch + 1 >= max_epochs:
        where += f": the run had finished (trainer.max_epochs={max_epochs} reached); "
    else:
        where += ": "
    if ended:
        where += (f"epoch {epoch} of the data had ended (all its {whole} minibatches), training goes on with epoch "
                  f"{epoch + 1}")
    else:
        images = f" ({position['images']} images)" if "images" in position else ""
        where += f"epoch {epoch} of the data goes on after its minibatch {position['batches']}{images}"
    return where + _changes_line(state, config)


def _changes_line(state: Dict[str, Any], config: Optional[Dict[str, Any]]) -> str:
    changes = config_changes(state.get("run_config") or {}, config) if config is not None else []
    return "\nwith options changed from that run: " + "; ".join(changes) if changes else ""


def _first_process() -> bool:
    """False in the processes a DDP launcher (Lightning's, torchrun, SLURM) started beside the first one."""
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))


REPLACED_DIR = ".replaced"  # run_dir/.replaced: an earlier run's checkpoints while `--overwrite` starts over


def check_run_dir(run_dir: Path, resume: Optional[str], overwrite: bool) -> Optional[Path]:
    """A fresh fit never mixes into (or silently replaces) a previous run's checkpoints (checkpoints/, and SLURM
    requeue checkpoints): it needs --resume to continue them or --overwrite to replace them. With --overwrite they
    (and config.yaml) are moved aside into run_dir/.replaced, which is deleted once training starts and put back if
    the new run fails before: a typo in the data or the config must not cost the earlier run. Returns that folder,
    if anything was moved."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    requeue = sorted(p.name for p in run_dir.glob(HPC_CHECKPOINT))
    old = (sorted(p.name for p in ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []) + requeue
    if resume is not None or not old or not _first_process():
        return None
    if not overwrite:
        names = ", ".join(old[:3]) + (", ..." if len(old) > 3 else "")
        how = "--resume last" if (ckpt_dir / "last.ckpt").is_file() and not requeue else "--resume auto"
        raise FileExistsError(
            f"{run_dir} holds the checkpoints of a previous run ({names}): continue it with {how}, train "
            f"elsewhere with run_dir=..., or pass --overwrite to delete them and start over")
    stash = run_dir / REPLACED_DIR
    if stash.exists():  # left by a run that was killed before it started training
        shutil.rmtree(stash)
    stash.mkdir()
    for path in [ckpt_dir, run_dir / "config.yaml", *run_dir.glob(HPC_CHECKPOINT)]:
        if path.exists():
            path.rename(stash / path.name)
    return stash


def _wrote_checkpoints(run_dir: Path) -> bool:
    ckpt_dir = run_dir / CHECKPOINT_DIR
    return (ckpt_dir.is_dir() and any(ckpt_dir.iterdir())) or any(run_dir.glob(HPC_CHECKPOINT))


def recover_replaced(run_dir: Path) -> None:
    """Put back what an `--overwrite` run that was killed before it trained had moved aside (see check_run_dir)."""
    stash = run_dir / REPLACED_DIR
    if _first_process() and stash.is_dir() and not _wrote_checkpoints(run_dir):
        _put_back(stash, run_dir)
        warnings.warn(f"{run_dir}: put back the checkpoints of an earlier run from {REPLACED_DIR}/ (a run with "
                      f"--overwrite stopped before it started training)", stacklevel=3)


def _put_back(stash: Path, run_dir: Path) -> None:
    """Undo check_run_dir's move, unless the new run already wrote checkpoints of its own."""
    if not stash.is_dir() or _wrote_checkpoints(run_dir):
        return
    if (run_dir / CHECKPOINT_DIR).is_dir():
        (run_dir / CHECKPOINT_DIR).rmdir()
    for path in stash.iterdir():
        path.replace(run_dir / path.name)
    shutil.rmtree(stash)


class DropReplacedRun(Callback):
    """Deletes the checkpoints that `--overwrite` moved aside, once the new run's training has started."""

    def __init__(self, stash: Path) -> None:
        self.stash = stash

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self.stash.is_dir():
            shutil.rmtree(self.stash)


class WriteRunConfig(Callback):
    """Writes run_dir/config.yaml as training starts: a run that fails before (a rejected resume, a data error)
    leaves the record of the run in its folder as it was."""

    def __init__(self, run_dir: Path, cfg: RunConfig):
        self.run_dir, self.cfg = run_dir, cfg

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(to_yaml(self.cfg))


def check_resume_limits(ckpt_path: str, cfg: RunConfig) -> None:
    """A checkpoint that has trained past the config's trainer.max_epochs cannot be continued (Lightning refuses
    it once it has started the run): said in one line, naming the key to raise, before anything is written."""
    state = load_checkpoint(ckpt_path, mmap=True)
    progress = (((state.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}).get("current") or {}
    epoch = int(progress.get("processed", state.get("epoch", 0)))  # Lightning's current_epoch once restored
    limit = cfg.trainer.max_epochs
    if limit is not None and limit != -1 and epoch > limit:
        raise ConfigError(f"--resume: {ckpt_path} has trained {epoch} epochs, more than trainer.max_epochs={limit}; "
                          f"raise trainer.max_epochs (e.g. trainer.max_epochs={epoch + max(1, limit)}) to go on")


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
        with frozen_modules_expected(module):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException as e:
        if stash is not None:
            _put_back(stash, run_dir)
        raise (TrainingStopped("Ctrl-C", 130) if ctrl_c.pressed else TrainingStopped("SIGTERM", 143)) from e
    except BaseException:
        if stash is not None:
            _put_back(stash, run_dir)
        raise
    return trainer, module


def undeclared_eval_modules(module: nn.Module) -> List[str]:
    """Submodules in eval mode that are not under one of the module's declared `frozen_modules`."""
    frozen = tuple(getattr(module, "frozen_modules", ()))
    return [name for name, m in module.named_modules()
            if not m.training and not any(name == f or name.startswith(f + ".") for f in frozen)]


@contextmanager
def frozen_modules_expected(module: pl.LightningModule):
    """Lightning warns when modules are in eval mode as training starts. A method's frozen parts (pSp's prior,
    StyleGAN2's G_ema), named in its `frozen_modules`, are meant to be: the warning is silenced when they are the
    only modules in eval mode, and still shown when any other module is."""
    with warnings.catch_warnings():
        if not undeclared_eval_modules(module):
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode",
                                    category=PossibleUserWarning)
        yield


def load_run(ckpt: str | Path, files: Sequence[str] = (), overrides: Sequence[str] = ()) -> Tuple[RunConfig, Any]:
    """A trained module and its run config from a checkpoint (config files/overrides are applied on top)."""
    state = load_checkpoint(ckpt)
    if not isinstance(state, dict) or "run_config" not in state:
        raise CheckpointError(f"{ckpt}: not a checkpoint written by this framework (no 'run_config' entry)")
    cfg = load_config(files, overrides, base=state["run_config"])
    # files that only initialise weights (pSp's encoder_weights, discriminator_weights) are not read again: the
    # checkpoint holds what was trained from them, and the files need not exist where the checkpoint is used
    init_only = getattr(METHODS[cfg.method].module_class, "init_only_keys", ())
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
        if not hasattr(module, "save_images_dir"):
            raise ValueError(f"--save-images: method '{cfg.method}' does not translate images")
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
        raise ValueError(f"--save-images {folder}: refusing to write into the data folder {data_root}")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--save-images {folder}: is a file; expected a new or empty folder")
    if rank_zero_only.rank == 0 and folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"--save-images {folder}: expected a new or empty folder (images of two runs would mix)")
    return folder


def export(ckpt: str | Path, out: str | Path, files: Sequence[str] = (), overrides: Sequence[str] = (),
           overwrite: bool = False, direction: Optional[str] = None) -> Path:
    """Export a trained translator to a bundle (ONNX + torch.export program + safetensors + translator.json).

    direction: for methods with one translator per direction (`module.export_directions`, e.g. CycleGAN's G_A
    "AtoB" and G_B "BtoA"): which one, or "both" for one bundle each in `out/AtoB` and `out/BtoA`; None = the
    method's default.
    """
    cfg, module = load_run(ckpt, files, overrides)
    if hasattr(module, "export_to"):  # a method whose artefact is not a translator bundle (stylegan2: a prior)
        if direction is not None:
            raise ValueError(f"--direction {direction}: method '{cfg.method}' exports no translator; leave it out")
        return module.export_to(out, overwrite=overwrite)
    choices = tuple(getattr(module, "export_directions", ()))
    if direction is not None and not choices:
        raise ValueError(f"--direction {direction}: method '{cfg.method}' exports a single translator (its direction "
                         f"is data.direction); leave --direction out")
    if direction is not None and direction not in (*choices, "both"):
        raise ValueError(f"--direction: expected one of {[*choices, 'both']}, got '{direction}'")
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
