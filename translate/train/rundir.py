"""A run's folder: which checkpoint `--resume` continues (last, auto, a path, SLURM requeue), what it says about
where training goes on, and the rule that a fresh fit never mixes into (or silently replaces) an earlier run."""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple


from translate.deploy.checkpoints import CheckpointError, load_checkpoint
from translate.train.config import ConfigError, RunConfig


CHECKPOINT_DIR = "checkpoints"


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
