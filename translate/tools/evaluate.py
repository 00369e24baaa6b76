"""`cli.py evaluate --pred out/ --ref refs/`: score a folder of results against a folder of references.

- Set metrics, always over the two folders: FID and KID (torchmetrics computes them; the Inception features come from
  `nets.inception` with the user's weight file).
- Pair metrics, when both folders hold the same file stems (pairs are matched by stem, never by sorted order): PSNR,
  SSIM, L1 (translate.tools.scoring, as in validation), LPIPS (`nets.perceptual` with the user's weight files) and identity
  similarity (`id`: cosine of face-recognition embeddings of the inner-face crops, as pSp's identity loss sees
  aligned faces). Each is reported as mean and standard deviation over the pairs, and per image in the JSON file.

A metric whose weights were not given is skipped with a line naming the option that enables it, unless it was asked
for by name (`--metrics fid,kid`): then it is an error naming the option and the config key. Nothing is downloaded.
"""
from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from datamodules.io import DataError, list_images, read_image
from datamodules.transforms import resize_bicubic
from nets.encoders import load_arcface
from nets.inception import LAYOUTS, load_inception
from nets.perceptual import LPIPS_TAPS, MissingWeightsError, load_lpips
from nets.similarity import FACE_CROP_256, ID_SIZE, IDLoss
from safeio import ConfigError, write_atomic
from translate.train.config import _explain
from translate.tools.scoring import score_each

PAIR_METRICS = ("psnr", "ssim", "l1", "lpips", "id")
# the smallest image whose inner-face crop (pSp's box, scaled from 256 px) fills the face network's 112 px: 153
ID_MIN_SIDE = math.ceil(ID_SIZE * 256 / (FACE_CROP_256[1] - FACE_CROP_256[0]))
SET_METRICS = ("fid", "kid")
METRICS = PAIR_METRICS + SET_METRICS
# metric -> (command-line option, config key) of each weight file it needs
NEEDS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "fid": (("--inception", "eval.inception_weights"),),
    "kid": (("--inception", "eval.inception_weights"),),
    "lpips": (("--lpips-backbone", "eval.lpips_backbone"), ("--lpips-weights", "eval.lpips_weights")),
    "id": (("--id-weights", "eval.id_weights"),),
}


@dataclass
class EvalConfig:
    """The `eval:` section of a config file; command-line options override it."""

    inception_weights: Optional[str] = None  # FID Inception file: pt_inception-2015-12-05-6726825d.pth (pytorch-fid)
    inception_layout: str = "fid"  # fid (TF FID graph, published numbers) | torchvision (inception_v3 ImageNet)
    lpips_net: str = "alex"  # alex | vgg (the LPIPS paper's default is alex)
    lpips_backbone: Optional[str] = None  # torchvision alexnet / vgg16 ImageNet state dict
    lpips_weights: Optional[str] = None  # LPIPS v0.1 linear heads: alex.pth / vgg.pth of richzhang/PerceptualSimilarity
    id_weights: Optional[str] = None  # face recognition: pSp's model_ir_se50.pth, or a CurricularFace IR-101 backbone
    size: Optional[int] = None  # resize every image to size x size (PIL bicubic) first; None = native size
    channels: int = 3  # read images as 1 (gray) or 3 (RGB) channels for PSNR/SSIM/L1; networks get RGB
    batch_size: int = 16  # images per network call
    kid_subsets: int = 100  # KID: number of random subsets (KID paper / torchmetrics default)
    kid_subset_size: int = 1000  # KID: images per subset; lowered to the smaller set's size, with a note
    device: str = "cpu"  # where the networks run: cpu | cuda | cuda:1 ...
    seed: int = 0  # KID's subset sampling


@dataclass
class _EvalFile:
    eval: EvalConfig = field(default_factory=EvalConfig)


def load_eval_config(files: Sequence[str | Path] = (), **options: Any) -> EvalConfig:
    """`eval:` sections of the YAML `files` (in order; other top-level sections, e.g. a run config's, are ignored),
    then the options that are not None. A wrong key or type fails naming it and where it came from."""
    cfg = OmegaConf.structured(_EvalFile)
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            node = OmegaConf.load(path)
        except Exception as e:  # yaml syntax errors come in several exception types
            raise ConfigError(f"{path}: not a valid YAML file: {e}") from e
        if not isinstance(node, DictConfig) or "eval" not in node:
            raise ConfigError(f"{path}: expected an 'eval:' section with keys among "
                              f"{', '.join(EvalConfig.__dataclass_fields__)}")
        try:
            cfg = OmegaConf.merge(cfg, {"eval": node["eval"]})
        except OmegaConfBaseException as e:
            raise _explain(e, str(path)) from e
    given = {k: v for k, v in options.items() if v is not None}
    try:
        cfg = OmegaConf.merge(cfg, {"eval": given})
    except OmegaConfBaseException as e:
        raise _explain(e, "command line") from e
    out: EvalConfig = OmegaConf.to_object(cfg).eval
    _check(out)
    return out


# the evaluate flag that sets each eval.* key, so an error names what the user typed
FLAGS = {"inception_layout": "--inception-layout", "lpips_net": "--lpips-net", "channels": "--channels",
         "batch_size": "--batch-size", "kid_subset_size": "--kid-subset-size", "size": "--size", "device": "--device"}


def _key(name: str) -> str:
    flag = FLAGS.get(name)
    return f"key 'eval.{name}'" + (f" ({flag})" if flag else "")


def _check(cfg: EvalConfig) -> None:
    if cfg.inception_layout not in LAYOUTS:
        raise ConfigError(f"{_key('inception_layout')}: expected one of {sorted(LAYOUTS)}, "
                          f"got {cfg.inception_layout!r}")
    if cfg.lpips_net not in LPIPS_TAPS:
        raise ConfigError(f"{_key('lpips_net')}: expected one of {sorted(LPIPS_TAPS)}, got {cfg.lpips_net!r}")
    if cfg.channels not in (1, 3):
        raise ConfigError(f"{_key('channels')}: expected 1 or 3, got {cfg.channels}")
    for key in ("batch_size", "kid_subsets", "kid_subset_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{_key(key)}: expected an integer >= 1, got {getattr(cfg, key)}")
    if cfg.size is not None and cfg.size < 1:
        raise ConfigError(f"{_key('size')}: expected an integer >= 1 or null, got {cfg.size}")
    from translate.deploy.inference import check_device

    try:
        check_device(cfg.device)
    except ValueError as e:
        raise ConfigError(f"{_key('device')}: {e}") from e


def check_out(out: str | Path, pred: str | Path, ref: str | Path) -> Path:
    """The JSON file `--out` may be written: not a folder, and never inside the folders being scored (an image
    there would be replaced). Checked before any image is read."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give the JSON file to write, e.g. {out / 'metrics.json'}",
                          key="--out")
    for name, folder in (("--pred", Path(pred)), ("--ref", Path(ref))):
        if folder.resolve() in out.resolve().parents:
            raise ConfigError(f"--out {out}: refusing to write into the {name} folder {folder}", key="--out")
    return out


def parse_metrics(text: Optional[str]) -> Optional[List[str]]:
    """'fid,kid' -> ['fid', 'kid']; None -> None (every metric that can run)."""
    if text is None:
        return None
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ConfigError(f"--metrics: expected a comma-separated list of {', '.join(METRICS)}, got {text!r}",
                          key="--metrics")
    return list(dict.fromkeys(names))


# ---- pairing and reading -----------------------------------------------------------------------------------------
def _by_stem(files: List[Path]) -> Dict[str, Path]:
    stems: Dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise DataError(f"two images with the stem '{f.stem}' in {f.parent}: {stems[f.stem].name} and {f.name} "
                            "(pairs are matched by file stem)")
        stems[f.stem] = f
    return stems


def match_pairs(pred: List[Path], ref: List[Path]) -> Tuple[List[Tuple[Path, Path]], Optional[str]]:
    """Pairs (pred, ref) by file stem when both folders hold the same stems; otherwise no pairs and the reason."""
    p, r = _by_stem(pred), _by_stem(ref)
    if set(p) == set(r):
        return [(p[s], r[s]) for s in sorted(p)], None
    parts = []
    for names, where in ((sorted(set(p) - set(r)), "--pred"), (sorted(set(r) - set(p)), "--ref")):
        if names:
            parts.append(f"{len(names)} only in {where} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    return [], "the folders do not hold the same file stems: " + "; ".join(parts)


def _read(path: Path, cfg: EvalConfig) -> torch.Tensor:
    """(C, H, W) uint8; a file that cannot be decoded raises BadImageError naming it."""
    img = read_image(path, cfg.channels)
    if cfg.size is not None:
        img = resize_bicubic(img, cfg.size, cfg.size)
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


def _batches(items: List[Any], cfg: EvalConfig, read) -> Iterator[List[Any]]:
    """Read `items` in chunks of batch_size and yield lists of decoded items of one shape (networks need a stack)."""
    for i in range(0, len(items), cfg.batch_size):
        groups: Dict[Tuple[int, ...], List[Any]] = defaultdict(list)
        for item in items[i:i + cfg.batch_size]:
            decoded = read(item)
            groups[tuple(decoded[0].shape if isinstance(decoded, tuple) else decoded.shape)].append(decoded)
        yield from groups.values()


def _read_pair(pair: Tuple[Path, Path], cfg: EvalConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    pred, ref = _read(pair[0], cfg), _read(pair[1], cfg)
    if pred.shape != ref.shape:
        raise DataError(f"{pair[0]} is {pred.shape[2]}x{pred.shape[1]} but {pair[1]} is {ref.shape[2]}x{ref.shape[1]}: "
                        "pass --size N to resize both")
    return pred, ref


# ---- the metrics ---------------------------------------------------------------------------------------------------
class _Precomputed(nn.Module):
    """torchmetrics' `feature` hook fed with features we computed: the Inception net runs once per image for both
    FID and KID instead of once per metric."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class _SetMetrics:
    def __init__(self, extractor: nn.Module, cfg: EvalConfig):
        n = getattr(extractor, "num_features", None)
        if not isinstance(n, int):
            raise TypeError(f"the feature extractor must have an int `num_features`, got {type(extractor).__name__}")
        self.extractor, self.device, self.num_features = extractor, torch.device(cfg.device), n
        self.fid = FrechetInceptionDistance(feature=_Precomputed(n))
        with warnings.catch_warnings():  # "KID keeps all features in memory": that is what it is
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            self.kid = KernelInceptionDistance(feature=_Precomputed(n), subsets=cfg.kid_subsets,
                                               subset_size=cfg.kid_subset_size)

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool) -> None:
        feats = self.extractor(images.to(self.device)).float().cpu()
        self.fid.update(feats, real=real)
        self.kid.update(feats, real=real)


def evaluate_folders(pred: str | Path, ref: str | Path, cfg: EvalConfig, metrics: Optional[Sequence[str]] = None,
                     extractor: Optional[nn.Module] = None, lpips: Optional[nn.Module] = None) -> Dict[str, Any]:
    """Score the images in `pred` against those in `ref`; returns a plain dict: metrics (means), std and per_image
    (pair metrics), counts, skipped, notes.

    `metrics=None` runs every metric that can run and skips the others with a reason; a named metric that cannot run
    is an error. `extractor` / `lpips` replace the networks built from `cfg`'s weight files (tests pass small ones).
    """
    pred_files, ref_files = list_images(pred), list_images(ref)
    pairs, no_pairs = match_pairs(pred_files, ref_files)
    wanted, skipped = _plan(metrics, cfg, no_pairs, have_extractor=extractor is not None, have_lpips=lpips is not None)
    device, notes = torch.device(cfg.device), []

    sets = None
    if any(m in wanted for m in SET_METRICS):
        for name, files in (("--pred", pred_files), ("--ref", ref_files)):
            if len(files) < 2:
                raise DataError(f"FID/KID need at least 2 images per folder; {name} has {len(files)}")
        if extractor is None:
            extractor = load_inception(cfg.inception_weights, cfg.inception_layout,
                                       key="--inception (eval.inception_weights)")
        requested = cfg.kid_subset_size
        cfg = replace(cfg, kid_subset_size=min(requested, len(pred_files), len(ref_files)))
        sets = _SetMetrics(extractor.to(device).eval(), cfg)
        notes += _set_notes(cfg, requested, sets.num_features, len(pred_files), len(ref_files))
    if "lpips" in wanted:
        if lpips is None:
            lpips = load_lpips(cfg.lpips_net, cfg.lpips_backbone, cfg.lpips_weights,
                               backbone_key="--lpips-backbone (eval.lpips_backbone)",
                               heads_key="--lpips-weights (eval.lpips_weights)")
        lpips = lpips.to(device).eval()
    identity = None
    if "id" in wanted:
        identity = IDLoss(load_arcface(cfg.id_weights, "--id-weights (eval.id_weights)")).to(device)

    scores: Dict[str, List[float]] = defaultdict(list)  # pair metric -> one value per pair, in `pairs` order
    stems: List[str] = []  # the pairs' stems, in the order scored
    smallest = None  # the smallest side of a scored image
    paired = [m for m in wanted if m in PAIR_METRICS]
    if pairs and (paired or sets is not None):  # one pass over the pairs feeds every metric
        for batch in _batches(pairs, cfg, lambda pair: (*_read_pair(pair, cfg), pair[0].stem)):
            fake, real = torch.stack([p for p, _, _ in batch]), torch.stack([r for _, r, _ in batch])
            if sets is not None:
                sets.update(fake, real=False)
                sets.update(real, real=True)
            stems += [stem for _, _, stem in batch]
            smallest = min(fake.shape[-2:]) if smallest is None else min(smallest, *fake.shape[-2:])
            _pair_scores(fake, real, paired, {"lpips": lpips, "id": identity}, device, scores)
    elif sets is not None:
        for files, real in ((pred_files, False), (ref_files, True)):
            for batch in _batches(files, cfg, lambda f: _read(f, cfg)):
                sets.update(torch.stack(batch), real=real)

    if "id" in paired and smallest is not None and smallest < ID_MIN_SIDE:
        notes.append(f"id: images down to {smallest} px; an inner-face crop under {ID_SIZE} px is enlarged "
                     f"for the face network, so identity scores of images under {ID_MIN_SIDE} px mean little")
    values: Dict[str, float] = {m: sum(scores[m]) / len(pairs) for m in paired}
    std = {m: (sum((v - values[m]) ** 2 for v in scores[m]) / len(pairs)) ** 0.5 for m in paired}
    if sets is not None:
        values.update(_set_scores(sets, wanted, cfg.seed))
    return {
        "pred": str(pred), "ref": str(ref), "n_pred": len(pred_files), "n_ref": len(ref_files), "pairs": len(pairs),
        "metrics": {m: values[m] for m in METRICS + ("kid_std",) if m in values},
        "std": {m: std[m] for m in PAIR_METRICS if m in std},
        "per_image": {stem: {m: scores[m][i] for m in PAIR_METRICS if m in std}
                      for i, stem in enumerate(stems)} if paired else {},
        "skipped": skipped, "notes": notes,
        "settings": {k: v for k, v in asdict(cfg).items() if k != "device"},
    }


def _plan(metrics: Optional[Sequence[str]], cfg: EvalConfig, no_pairs: Optional[str], have_extractor: bool,
          have_lpips: bool) -> Tuple[List[str], Dict[str, str]]:
    """(metrics to run, {skipped metric: why}). A metric named in `metrics` that cannot run raises instead."""
    wanted = list(metrics) if metrics is not None else list(METRICS)
    have = {"fid": have_extractor, "kid": have_extractor, "lpips": have_lpips, "id": False}
    reasons: Dict[str, Tuple[type, str]] = {}
    if no_pairs:
        reasons.update({m: (DataError, f"needs pairs, and {no_pairs}") for m in PAIR_METRICS})
    for m in NEEDS:
        missing = [f"{opt} PATH ({key})" for opt, key in NEEDS[m] if not getattr(cfg, key.split(".")[1])]
        if missing and not have[m]:
            reasons.setdefault(m, (MissingWeightsError, "needs " + " and ".join(missing) + "; nothing is downloaded"))
    skipped = {}
    for m in [m for m in wanted if m in reasons]:
        error, why = reasons[m]
        if metrics is not None:
            raise error(f"{m} {why}")
        skipped[m] = why
        wanted.remove(m)
    for m in [m for m in wanted if m in NEEDS and not have[m]]:  # fail before any image is read
        for opt, key in NEEDS[m]:
            path = Path(getattr(cfg, key.split(".")[1]))
            if not path.is_file():
                raise FileNotFoundError(f"{opt} ({key}): weight file not found: {path}")
    return wanted, skipped


def _set_notes(cfg: EvalConfig, requested_kid_size: int, num_features: int, n_pred: int, n_ref: int) -> List[str]:
    notes = []
    if cfg.kid_subset_size < requested_kid_size:
        notes.append(f"kid: subset size {cfg.kid_subset_size} (the smaller set) instead of {requested_kid_size}; "
                     "KID from different subset sizes is not comparable")
    if min(n_pred, n_ref) < num_features:
        notes.append(f"fid: fewer images than the {num_features} feature dimensions; FID is biased upward at small "
                     "counts: compare FIDs only at equal image counts")
    if cfg.inception_layout == "torchvision":
        notes.append("fid/kid: torchvision's Inception weights; not comparable with published FID/KID")
    return notes


def _pair_scores(fake: torch.Tensor, real: torch.Tensor, metrics: List[str], nets: Dict[str, Optional[nn.Module]],
                 device: torch.device, scores: Dict[str, List[float]]) -> None:
    """Append the PSNR/SSIM/L1 (translate.tools.scoring, in [0, 1]), LPIPS and identity similarity of each pair of one
    batch to `scores`."""
    to_pm1 = lambda t: t.float() / 127.5 - 1.0  # noqa: E731  uint8 -> [-1, 1], the project's image range
    if any(m in metrics for m in ("psnr", "ssim", "l1")):
        each = score_each(list(to_pm1(fake)), list(to_pm1(real)))
        for m in ("psnr", "ssim", "l1"):
            if m in metrics:
                scores[m] += each[m]
    x0, x1 = to_pm1(fake).to(device), to_pm1(real).to(device)
    with torch.no_grad():
        if "lpips" in metrics:
            scores["lpips"] += nets["lpips"](x0, x1).tolist()
        if "id" in metrics:  # cosine of the unit-length embeddings; gray images are taken as gray RGB
            f0, f1 = (nets["id"].features(x.expand(-1, 3, -1, -1)) for x in (x0, x1))
            scores["id"] += (f0 * f1).sum(dim=1).tolist()


def _set_scores(sets: _SetMetrics, wanted: List[str], seed: int) -> Dict[str, float]:
    out: Dict[str, float] = {}
    if "fid" in wanted:
        out["fid"] = float(sets.fid.compute())
    if "kid" in wanted:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # KID draws its subsets from the global generator
            mean, std = sets.kid.compute()
        out["kid"], out["kid_std"] = float(mean), float(std)
    return out


# ---- output --------------------------------------------------------------------------------------------------------
UNITS = {"psnr": " dB"}


def format_table(result: Dict[str, Any]) -> str:
    """The metrics as an aligned text table, then the skipped metrics and notes."""
    rows = []
    for m, v in result["metrics"].items():
        if m == "kid_std":
            continue
        over = (f"{result['pairs']} pairs" if m in PAIR_METRICS
                else f"{result['n_pred']} pred vs {result['n_ref']} ref images")
        spread = result.get("std", {}).get(m) if m != "kid" else result["metrics"]["kid_std"]
        digits = 6 if m == "kid" else 4
        text = f"{v:.{digits}f}" + (f" +- {spread:.{digits}f}" if spread is not None else "") + UNITS.get(m, "")
        rows.append((m, text, over))
    lines = []
    if rows:
        w0, w1 = max(len(r[0]) for r in rows + [("metric", "", "")]), max(len(r[1]) for r in rows)
        lines.append(f"{'metric':<{w0}}  {'value':<{w1}}  over")
        lines += [f"{m:<{w0}}  {t:<{w1}}  {o}" for m, t, o in rows]
    else:
        lines.append("no metric could be computed")
    lines += [f"skipped {m}: {why}" for m, why in result["skipped"].items()]
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def write_json(result: Dict[str, Any], path: str | Path) -> Path:
    """Write `result` as JSON atomically (temporary file beside it, then rename)."""
    path = Path(path)
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n"))
    return path
