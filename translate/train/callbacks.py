"""The Lightning callbacks of a run: the run config and random generators in every checkpoint, the config's learning
rates on resume, checkpoints every N minibatches that refuse NaN weights, SIGTERM and Ctrl-C saving after a minibatch,
config.yaml written as training starts, and Lightning's checkpoint I/O made atomic."""
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
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.warnings import PossibleUserWarning

from translate.deploy.checkpoints import atomic_torch_save, load_checkpoint
from translate.methods.interface import Method
from translate.train.config import RunConfig, to_yaml


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
                for group, base, factor in zip(opt.param_groups, bases, new_sched.lr_lambdas):
                    group["initial_lr"], group["lr"] = base, base * factor(sched.last_epoch)
                # the config's schedule at the restored position, through the scheduler's own state (its
                # state_dict/load_state_dict): new rates and lambdas, same last_epoch
                sched.lr_lambdas = new_sched.lr_lambdas
                sched.load_state_dict({**sched.state_dict(), "base_lrs": list(bases),
                                       "_last_lr": [g["lr"] for g in opt.param_groups]})
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


class RunCheckpoint(Checkpoint):
    """Writes `dirpath/<name>` through `trainer.save_checkpoint` (atomic: AtomicCheckpointIO) every
    `every_n_minibatches` training minibatches, or else at the end of every `every_n_epochs`-th epoch; with
    `at_end`, also when training ends and when SIGTERM or Ctrl-C stops it after a minibatch (so `--resume` loses
    nothing). `name` may name the global step, e.g. "step-{step:07d}.ckpt": then every save is a new file (snapshots).

    It counts minibatches, not Lightning's optimizer steps (`every_n_train_steps`), which our methods take 2-4 of per
    minibatch (G, D, StyleGAN2's lazy regularisers). As a Lightning `Checkpoint` it runs after the module's own
    epoch-end hook (which steps the LR schedules), as ModelCheckpoint does. The count is part of the callback's state
    in every checkpoint, so a resumed run keeps the cadence."""

    def __init__(self, dirpath: Path, name: str, *, every_n_minibatches: Optional[int] = None,
                 every_n_epochs: int = 1, at_end: bool = False):
        self.dirpath, self.name = Path(dirpath), name
        self.every_n_minibatches, self.every_n_epochs, self.at_end = every_n_minibatches, every_n_epochs, at_end
        self.minibatches = 0  # training minibatches begun in this run, resumed ones included
        self._saved_step: Optional[int] = None  # the global step of the last save (one file per step)

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.name}]"

    def state_dict(self) -> Dict[str, Any]:
        return {"minibatches": self.minibatches}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.minibatches = int(state_dict.get("minibatches", 0))

    def save(self, trainer: pl.Trainer) -> None:
        if trainer.sanity_checking or trainer.global_step == self._saved_step:
            return
        trainer.save_checkpoint(self.dirpath / self.name.format(step=trainer.global_step))
        self._saved_step = trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.minibatches += 1  # counted before any callback saves at this minibatch's end, so every state agrees

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_minibatches and self.minibatches % self.every_n_minibatches == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        n = self.every_n_epochs
        if not self.every_n_minibatches and n and (trainer.current_epoch + 1) % n == 0:
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_end:
            self.save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """SIGTERM (a preempted cloud machine, a scheduler's time limit, `kill`, Ctrl-C): Lightning stops after the
        current minibatch, and the checkpoint is saved there. Other exceptions can come mid-step (between G's and
        D's updates): no checkpoint then."""
        if self.at_end and isinstance(exception, SIGTERMException):
            self.save(trainer)


class RefuseNonFiniteWeights(Callback):
    """A diverged run (NaN or inf weights) stops with a clear error instead of saving any checkpoint: the
    checkpoints it would overwrite are the last good state, which `--resume last` needs. Runs in every save
    (`on_save_checkpoint` comes before the file is written), the best checkpoints' included."""

    def __init__(self, dirpath: Path):
        self.last = Path(dirpath) / "last.ckpt"

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        bad = non_finite_tensors(pl_module)
        # every process decides alike (StyleGAN2 keeps some buffers per process), or the others would wait forever
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            bad = bad or ["a tensor of another process"]
            kept = (f"{self.last} keeps step {load_checkpoint(self.last, mmap=True).get('global_step')}"
                    if self.last.is_file() else "no checkpoint was written before")
            more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
            raise TrainingDiverged(
                f"training diverged at step {trainer.global_step}: {bad[0]}{more} holds NaN or inf, so no checkpoint "
                f"was written ({kept}). Lower the learning rate, or train in trainer.precision=32 or bf16-mixed "
                f"instead of 16-mixed, then continue with --resume last")


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


def undeclared_eval_modules(module: Method) -> List[str]:
    """Submodules in eval mode that are not under one of the module's declared `frozen_modules`."""
    frozen = tuple(module.frozen_modules)
    return [name for name, m in module.named_modules()
            if not m.training and not any(name == f or name.startswith(f + ".") for f in frozen)]


@contextmanager
def frozen_modules_expected(module: Method):
    """Lightning warns when modules are in eval mode as training starts. A method's frozen parts (pSp's prior,
    StyleGAN2's G_ema), named in its `frozen_modules`, are meant to be: the warning is silenced when they are the
    only modules in eval mode, and still shown when any other module is."""
    with warnings.catch_warnings():
        if not undeclared_eval_modules(module):
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode",
                                    category=PossibleUserWarning)
        yield
