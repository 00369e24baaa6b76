"""Run configuration: YAML files + dotted overrides -> typed dataclasses, validated before anything runs.

YAML -> `OmegaConf.merge(structured schema, file, ..., overrides)` -> `OmegaConf.to_object`. Every source is merged
on its own so that a misspelled or mistyped key fails naming the key *and* the file (or "command line") it came from.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from datamodules.config import DataConfig
from safeio.errors import ConfigError
from translate.methods.schedules import EpochSchedule


@dataclass
class TrainerConfig:
    """Passed straight to `pytorch_lightning.Trainer` (these are its own argument names)."""

    max_epochs: int = 200  # reference pix2pix: 100 epochs + 100 epochs of linear decay
    max_steps: int = -1  # optimizer steps (a GAN step counts one per optimizer); -1 = no limit
    max_time: Optional[str] = None  # wall-clock budget "DD:HH:MM:SS"; training stops (and checkpoints) when spent
    accelerator: str = "auto"  # auto | cpu | gpu | ...
    devices: Any = "auto"  # number of devices, a list of ids, or "auto"
    num_nodes: int = 1  # machines for multi-node DDP
    strategy: str = "auto"  # auto | ddp | ddp_spawn | fsdp ... (GAN-specific DDP settings are preset)
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed
    log_every_n_steps: int = 50  # how often scalars are written
    # validation frequency in epochs; null: val_check_interval counts batches across epochs
    check_val_every_n_epoch: Optional[int] = 1
    val_check_interval: Optional[Union[int, float]] = None  # validate every N batches (int) or epoch fraction (float)
    limit_train_batches: Optional[Union[int, float]] = None  # only this many batches (int) or this fraction (float)
    limit_val_batches: Optional[Union[int, float]] = None
    num_sanity_val_steps: int = 0  # GAN validation before training tells nothing; keep start-up short
    deterministic: bool = False  # torch deterministic algorithms
    benchmark: Optional[bool] = None  # cudnn.benchmark
    enable_progress_bar: bool = True  # rich progress bar


@dataclass
class WandbConfig:
    """Weights & Biases tracking through Lightning's WandbLogger."""

    mode: str = "offline"  # offline | online | disabled
    project: str = "translate"  # W&B project name
    entity: Optional[str] = None  # W&B team or user
    name: Optional[str] = None  # run name (default: the run directory's name)
    tags: List[str] = field(default_factory=list)


@dataclass
class LoggerConfig:
    """What is tracked and how often."""

    wandb: WandbConfig = field(default_factory=WandbConfig)
    csv: bool = True  # also write metrics.csv in the run directory
    image_every_n_steps: int = 500  # training image grids every N optimizer steps (0 = never)
    n_images: int = 4  # rows in an image grid


@dataclass
class CheckpointConfig:
    """Checkpoints `last.ckpt`, the best by a metric and optional snapshots, in `<run_dir>/checkpoints/`."""

    monitor: Optional[str] = "val/psnr"  # metric for the best checkpoint (None = keep only `last`)
    mode: str = "max"  # max | min
    save_top_k: int = 1  # how many best checkpoints to keep
    every_n_epochs: int = 1  # checkpoint frequency (epochs)
    every_n_train_steps: Optional[int] = None  # or every N training minibatches (+ at the end)
    keep_every_n_train_steps: Optional[int] = None  # also keep a snapshot step-<global step>.ckpt every N minibatches


@dataclass
class ExportConfig:
    """Defaults of `cli.py export`."""

    opset: Optional[int] = None  # ONNX opset (None = the exporter's default)
    atol: float = 1e-4  # onnxruntime vs eager parity tolerance; the export fails beyond it
    dynamic_batch: bool = True  # batch size free in the exported graphs
    dynamic_spatial: bool = True  # height/width free (multiples of the net's size multiple)
    example_size: Optional[int] = None  # spatial size of the example input (default: data.crop_size)


@dataclass
class RunConfig:
    """Everything one run needs. `model` is the chosen method's own dataclass (see translate.methods.METHODS)."""

    method: str = "pix2pix"  # which method trains (a key of translate.methods.METHODS)
    seed: int = 0  # seeds torch, numpy and python, and the data order
    run_dir: str = "runs/${method}"  # checkpoints, resolved config, logs and images go here
    model: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


def _explain(err: OmegaConfBaseException, source: str, prefix: str = "") -> ConfigError:
    key = getattr(err, "full_key", None) or ""
    key = f"{prefix}{key}" if key else prefix.rstrip(".")
    msg = str(err).splitlines()[0]
    if "is not a ListConfig" in msg:  # OmegaConf's words for a scalar given to a list option
        value = getattr(err, "value", None)
        msg = f"expected a list, e.g. [{value if value is not None else '...'}]" + (f", got {value!r}"
                                                                                  if value is not None else "")
    where = f"key '{key}'" if key else "config"
    return ConfigError(f"{source}: {where}: {msg}")


def _load_sources(files: Sequence[str | Path], overrides: Sequence[str]) -> List[Tuple[str, DictConfig]]:
    sources: List[Tuple[str, DictConfig]] = []
    for f in files:
        sources.extend(_load_file(Path(f), ()))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command line: override '{item}' is not of the form key=value")
    try:
        sources.append(("command line", OmegaConf.from_dotlist(list(overrides))))
    except (OmegaConfBaseException, yaml.YAMLError) as e:
        raise ConfigError(f"command line: cannot parse overrides {list(overrides)}: {e}") from e
    return sources


INCLUDE_KEY = "include"  # a config file may name files (relative to itself) merged before it


def _load_file(path: Path, chain: Tuple[Path, ...]) -> List[Tuple[str, DictConfig]]:
    """A YAML file as merge sources: the files it includes (recursively, first), then itself."""
    if not path.is_file():
        where = f" (included by {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    if path.resolve() in chain:
        raise ConfigError(f"{path}: includes itself (through {' -> '.join(str(p) for p in chain)})")
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # yaml syntax errors come in several exception types
        raise ConfigError(f"{path}: not a valid YAML file: {e}") from e
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level, got a list")
    sources: List[Tuple[str, DictConfig]] = []
    if INCLUDE_KEY in node:
        included = node.pop(INCLUDE_KEY)
        included = [included] if isinstance(included, str) else included
        if not all(isinstance(i, str) for i in (included or [])):
            raise ConfigError(f"{path}: key '{INCLUDE_KEY}': expected a file name or a list of them")
        for name in included or []:
            sources.extend(_load_file(path.parent / name, chain + (path.resolve(),)))
    sources.append((str(path), node))
    return sources


def load_config(
    files: Sequence[str | Path] = (), overrides: Sequence[str] = (), base: Optional[Dict[str, Any]] = None
) -> RunConfig:
    """Merge config files (in order) and `key=value` overrides onto the schema; return typed dataclasses.

    `base` is a plain-dict config merged first (e.g. the one stored in a checkpoint).
    """
    from translate.methods.registry import METHODS  # the registry imports the methods; keep config import light

    sources = _load_sources(files, overrides)
    if base is not None:
        sources.insert(0, ("checkpoint config", OmegaConf.create(base)))
    method = "pix2pix"
    for _, node in sources:
        method = node.get("method", method)
    if method not in METHODS:
        raise ConfigError(f"key 'method': expected one of {sorted(METHODS)}, got '{method}'")
    model_schema = METHODS[method].config_class

    base = OmegaConf.structured(RunConfig)
    model = OmegaConf.structured(model_schema)
    sections = {k for k, v in OmegaConf.to_container(base).items() if isinstance(v, dict)} | {"model"}
    for source, node in sources:
        for key in sections & set(node.keys()):
            value = node._get_node(key)._value()
            if value is not None and not OmegaConf.is_dict(node[key]):
                raise ConfigError(f"{source}: key '{key}' must be a section of options (indented keys under "
                                  f"'{key}:'), got {value!r}")
        node = node.copy()
        model_node = node.pop("model", None) if "model" in node else None
        try:
            base = OmegaConf.merge(base, node)
        except OmegaConfBaseException as e:
            raise _explain(e, source) from e
        if model_node is not None:
            try:
                model = OmegaConf.merge(model, model_node)
            except OmegaConfBaseException as e:
                raise _explain(e, source, prefix="model.") from e
    base.model = model
    _check_required(sources)  # after the merges: a misspelled key or a wrong type is named first
    try:
        cfg = OmegaConf.to_object(base)
    except OmegaConfBaseException as e:
        raise _explain(e, "config") from e
    if not is_dataclass(cfg.model):  # to_object leaves an untyped node as a dict
        cfg.model = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(model_schema), cfg.model))
    _check_missing(cfg)
    if not _set_in(sources, "trainer", "max_epochs"):
        derive_max_epochs(cfg)
    return cfg


def _set_in(sources: List[Tuple[str, DictConfig]], section: str, key: str) -> bool:
    """Whether any file, override or base config sets `section.key`."""
    return any(section in node and OmegaConf.is_dict(node[section]) and key in node[section] for _, node in sources)


def derive_max_epochs(cfg: RunConfig) -> None:
    """trainer.max_epochs, when no source sets it, is the length of the method's LR schedule (linear:
    model.n_epochs + model.n_epochs_decay), so a run trains exactly over its schedule."""
    if isinstance(cfg.model, EpochSchedule) and cfg.model.schedule_epochs() is not None:
        cfg.trainer.max_epochs = cfg.model.schedule_epochs()


def schedule_mismatch(cfg: RunConfig) -> Optional[str]:
    """One line when trainer.max_epochs and the method's LR schedule disagree (None when they agree or the method
    has no per-epoch schedule): past its end the schedule holds its end value, 0."""
    m, t = cfg.model, cfg.trainer
    end = m.schedule_epochs() if isinstance(m, EpochSchedule) else None
    if end is None or t.max_epochs == end:
        return None
    length = (f"model.n_epochs={m.n_epochs} + model.n_epochs_decay={m.n_epochs_decay}" if m.lr_policy == "linear"
              else f"model.n_epochs={m.n_epochs}, lr_policy {m.lr_policy}")
    if 0 <= t.max_epochs < end:
        return (f"trainer.max_epochs={t.max_epochs} ends before the LR schedule's {end} epochs ({length}): the "
                f"learning rate will not have decayed to 0; set one to match the other")
    span = "every later epoch" if t.max_epochs < 0 else f"epochs {end + 1}-{t.max_epochs}"
    return (f"trainer.max_epochs={t.max_epochs} runs past the LR schedule's {end} epochs ({length}): {span} train "
            f"at learning rate 0; set one to match the other")


def _flat_keys(node: Any, prefix: str = ""):
    """(dotted key, raw value) of every leaf, without resolving interpolations or missing values."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            yield from _flat_keys(node._get_node(key), f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node._value() if hasattr(node, "_value") else node


def _check_required(sources: List[Tuple[str, DictConfig]]) -> None:
    """A value written `???` in a file must be given by a later file or the command line."""
    required: Dict[str, str] = {}
    for source, node in sources:
        for key, value in _flat_keys(node):
            if value == "???":
                required[key] = source
            else:
                required.pop(key, None)
    if len(required) == 1:
        key, source = next(iter(required.items()))
        raise ConfigError(f"key '{key}' must be set (required by {source}), e.g. {key}=...")
    if required:
        by = ", ".join(dict.fromkeys(required.values()))
        raise ConfigError(f"keys {', '.join(repr(k) for k in required)} must be set (required by {by}), e.g. "
                          f"{' '.join(f'{k}=...' for k in required)}")


def _check_missing(cfg: RunConfig) -> None:
    plain = to_dict(cfg)

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif node == "???":
            raise ConfigError(f"key '{prefix.rstrip('.')}' must be set (no default)")

    walk(plain, "")


def to_dict(cfg: Any) -> Dict[str, Any]:
    """Plain nested dict (for checkpoints, W&B and YAML): never a DictConfig."""
    return asdict(cfg) if is_dataclass(cfg) else dict(cfg)


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))
