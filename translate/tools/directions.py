"""Latent directions in W of a StyleGAN2 prior, for editing inverted images (`translate directions`, `translate edit`).

Three ways to find a direction n (a unit vector in W, applied to chosen layers of a W+ code):
- `sefa` (SeFa, Shen & Zhou 2021, closed form, no data): the eigenvectors of A^T A, where A stacks the style-affine
  weights (style channels x w_dim, each channel's row scaled to unit length) of the synthesis convolutions that read
  the chosen layers; the eigenvector with the largest eigenvalue moves their styles the most;
- `ganspace` (GANSpace, Haerkoenen et al. 2020): principal components of w = mapping(z) for sampled z, ordered by
  explained variance, applied to a chosen layer range;
- `boundary` (InterFaceGAN, Shen et al. 2020): the normal of a linear boundary fitted to codes with labels: logistic
  regression for two label values, least squares for a scalar; the codes are inverted images (W+ codes averaged
  over the chosen layers), labels from a CSV (file name -> label) or the toy faces' known attributes.

Every direction is one small safetensors file: key "direction" (w_dim,), metadata (strings) with the format, how it
was made, the layers it applies to, `scale` (the std of the prior's W along it: an edit of strength
s moves the code by s * scale) and the prior it belongs to: n_latent, w_dim and a fingerprint of the synthesis
weights, so that a direction is never applied to another prior's codes by mistake.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from safeio.errors import ConfigError, LoadError

DIRECTION_KEY = "direction"
DIRECTION_FORMAT = "translate-kit/direction"
SCALE_SAMPLES = 10000  # z samples through the mapping network that measure the std of W along a direction
GANSPACE_SAMPLES = 20000  # GANSpace's PCA sample size (the paper: 10^6 for StyleGAN; the toy priors need far fewer)
BOUNDARY_STEPS = 500  # full-batch LBFGS iterations of the logistic regression (converges in far fewer)
BOUNDARY_L2 = 1e-3  # ridge / weight-decay strength of the boundary fits (on standardised codes)


# ---- the prior a direction belongs to ------------------------------------------------------------------------
def prior_fingerprint(synthesis: nn.Module) -> str:
    """sha256 (16 hex digits) of the synthesis network's weights and buffers: what W codes are rendered through.
    The same prior as a file, inside a pSp bundle or a checkpoint gives the same fingerprint."""
    h = hashlib.sha256()
    for name, t in sorted(synthesis.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def parse_layers(text: str, n_latent: int, flag: str = "--layers") -> List[int]:
    """'0-5', '3', '0-3,8-9' or 'all' -> sorted layer indices, each < n_latent."""
    if text.strip() == "all":
        return list(range(n_latent))
    layers = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            a, b = int(lo), int(hi) if hi else int(lo)
            if a > b:
                raise ValueError
            layers.update(range(a, b + 1))
    except ValueError:
        raise ConfigError(f"{flag}: expected layers like 0-5, 3 or 0-3,8-9 (or all), got '{text}'", key=flag) from None
    bad = sorted(i for i in layers if not 0 <= i < n_latent)
    if bad or not layers:
        raise ConfigError(f"{flag}: layers must lie in 0-{n_latent - 1} (the prior has {n_latent} codes), got "
                          f"'{text}'", key=flag)
    return sorted(layers)


def format_layers(layers: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (the inverse of parse_layers)."""
    parts, start = [], None
    for i, k in enumerate(layers):
        if start is None:
            start = k
        if i + 1 == len(layers) or layers[i + 1] != k + 1:
            parts.append(f"{start}-{k}" if k != start else f"{k}")
            start = None
    return ",".join(parts)


# ---- one direction on disk -------------------------------------------------------------------------------------
@dataclass
class Direction:
    vector: torch.Tensor  # (w_dim,), unit length
    layers: List[int]  # the W+ layers an edit moves by default
    scale: float  # std of W along the vector: strength s moves a code by s * scale
    method: str  # sefa | ganspace | boundary
    prior: str  # prior_fingerprint of the synthesis it was made for
    n_latent: int
    how: Dict[str, object]  # how it was made (parameters, eigenvalue, variance, accuracy, ...)

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        from safeio import write_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": DIRECTION_FORMAT, "method": self.method, "prior": self.prior,
                "n_latent": str(self.n_latent), "w_dim": str(self.vector.numel()),
                "layers": format_layers(self.layers), "scale": repr(float(self.scale)),
                "how": json.dumps(self.how, sort_keys=True)}
        tensor = self.vector.detach().float().cpu().contiguous()
        write_atomic(path, lambda p: save_file({DIRECTION_KEY: tensor}, p, metadata=meta))
        return path


def load_direction(path: str | Path) -> Direction:
    """A direction written by `translate directions`; a file of another kind is an error naming it."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"direction file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != DIRECTION_FORMAT or DIRECTION_KEY not in f.keys():
                raise LoadError(f"{path}: not a direction file (expected format '{DIRECTION_FORMAT}' and a "
                                f"'{DIRECTION_KEY}' tensor, as `translate directions` writes)")
            vector = f.get_tensor(DIRECTION_KEY).float()
    except (SafetensorError, OSError) as e:
        raise LoadError(f"{path}: not a safetensors direction file ({e})") from e
    try:
        n_latent, w_dim = int(meta["n_latent"]), int(meta["w_dim"])
        d = Direction(vector, parse_layers(meta["layers"], n_latent, f"{path}: layers"), float(meta["scale"]),
                      meta["method"], meta["prior"], n_latent, json.loads(meta.get("how", "{}")))
    except (KeyError, ValueError, json.JSONDecodeError) as e:
        raise LoadError(f"{path}: bad direction metadata ({e})") from None
    if tuple(vector.shape) != (w_dim,) or not bool(torch.isfinite(vector).all()):
        raise LoadError(f"{path}: expected a finite direction of shape ({w_dim},), got {tuple(vector.shape)}")
    return d


def check_direction(d: Direction, synthesis: nn.Module, path: str | Path = "direction") -> None:
    """A direction made for another prior is an error: shape, code count and weights fingerprint must match."""
    w_dim, n_latent = int(synthesis.w_dim), int(synthesis.num_ws)
    if d.vector.numel() != w_dim or d.n_latent != n_latent:
        raise LoadError(f"{path}: made for a prior with {d.n_latent} codes of {d.vector.numel()} dims; this prior "
                        f"has {n_latent} x {w_dim}: directions belong to the prior they were made for")
    here = prior_fingerprint(synthesis)
    if d.prior != here:
        raise LoadError(f"{path}: made for another prior (fingerprint {d.prior}, this one {here}): directions "
                        f"belong to the prior they were made for; make one for this prior with "
                        f"`translate directions`")


def apply_direction(w: torch.Tensor, d: Direction, strengths: Sequence[float],
                    layers: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Edited codes (len(strengths), n_latent, w_dim) of one code (n_latent, w_dim): w + s * scale * n on `layers`
    (default the direction's own)."""
    layers = list(d.layers if layers is None else layers)
    index = torch.tensor(layers, dtype=torch.long, device=w.device)  # (a list index would be a CPU tensor)
    mask = torch.zeros(w.shape[0], 1, device=w.device).index_fill_(0, index, 1.0)
    s = torch.tensor([float(x) for x in strengths], device=w.device).view(-1, 1, 1)
    return w[None] + s * d.scale * mask[None] * d.vector.to(w.device).view(1, 1, -1)


def parse_strengths(text: str) -> List[float]:
    """'-3:3:7' (start:stop:count, both ends included) or '-2,0,2' -> strengths."""
    try:
        if ":" in text:
            a, b, n = text.split(":")
            if int(n) < 1:
                raise ValueError
            return [float(x) for x in np.linspace(float(a), float(b), int(n))]
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--strength: expected start:stop:count (e.g. -3:3:7) or a comma list (e.g. -2,0,2), "
                          f"got '{text}'", key="--strength") from None


# ---- SeFa --------------------------------------------------------------------------------------------------------
def style_affines(synthesis: nn.Module) -> Dict[int, List[nn.Module]]:
    """W+ layer index -> the style affines of the synthesis convolutions that read it (ToRGB layers left out,
    as SeFa does)."""
    out: Dict[int, List[nn.Module]] = {}
    idx = 0
    for res in synthesis.block_resolutions:
        block = getattr(synthesis, f"b{res}")
        convs = ([block.conv0] if hasattr(block, "conv0") else []) + [block.conv1]
        for k, conv in enumerate(convs):
            out.setdefault(idx + k, []).append(conv.affine)
        idx += block.num_conv
    return out


def sefa_matrix(synthesis: nn.Module, layers: Sequence[int]) -> torch.Tensor:
    """A (style channels of the chosen layers, w_dim): their affine weights, each row scaled to unit length."""
    affines = style_affines(synthesis)
    rows = [a.weight.detach().float().cpu() for i in layers for a in affines.get(i, [])]
    if not rows:
        raise ConfigError(f"--layers: no synthesis convolution reads layers {format_layers(layers)} (ToRGB-only "
                          f"layers have no SeFa directions)", key="--layers")
    A = torch.cat(rows)  # (sum of style channels, w_dim)
    return A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)


def sefa(synthesis: nn.Module, layers: Sequence[int], num: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The `num` leading SeFa directions (num, w_dim) and their eigenvalues (num,), largest first."""
    A = sefa_matrix(synthesis, layers).double()
    values, vectors = torch.linalg.eigh(A.T @ A)  # ascending
    order = torch.argsort(values, descending=True)[:num]
    return vectors[:, order].T.float().contiguous(), values[order].float()


# ---- GANSpace ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def sample_w(G: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """w = mapping(z) (n, w_dim) for n seeded z, in batches."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    return torch.cat([G.mapping(z[i:i + 1000])[:, 0] for i in range(0, n, 1000)])


def ganspace(G: nn.Module, num: int, samples: int = GANSPACE_SAMPLES,
             seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The `num` leading principal components (num, w_dim) of W, their stds (num,) and the W samples' mean."""
    w = sample_w(G, samples, seed).double()
    mean = w.mean(0)
    _, s, vt = torch.linalg.svd(w - mean, full_matrices=False)
    stds = s / (w.shape[0] - 1) ** 0.5
    # a component's sign is arbitrary: fix it so that the largest entry is positive (reproducible files)
    signs = torch.sign(vt[torch.arange(vt.shape[0]), vt.abs().argmax(1)])
    return (vt * signs[:, None])[:num].float(), stds[:num].float(), mean.float()


def w_scale(G: nn.Module, vector: torch.Tensor, samples: int = SCALE_SAMPLES) -> float:
    """The std of the prior's W along a unit vector."""
    return float((sample_w(G, samples, seed=1) @ vector).std())


# ---- InterFaceGAN ------------------------------------------------------------------------------------------------
@dataclass
class Boundary:
    normal: torch.Tensor  # (w_dim,), unit length, pointing to larger labels
    kind: str  # "binary" (logistic regression) or "scalar" (least squares)
    score: float  # training accuracy (binary) or R^2 (scalar)
    scale: float  # std of the codes along the normal


def fit_boundary(codes: torch.Tensor, labels: torch.Tensor, l2: float = BOUNDARY_L2) -> Boundary:
    """InterFaceGAN's linear boundary of codes (N, w_dim) with labels (N,): logistic regression (full-batch LBFGS)
    for two distinct labels, ridge least squares for more; the normal points to the larger label."""
    x, y = codes.double(), labels.double().flatten()
    if x.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"fit_boundary: expected codes (N, w_dim) and N labels, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    values = torch.unique(y)
    if values.numel() < 2:
        raise ConfigError(f"labels: all {y.numel()} codes have the label {float(values[0])}; a boundary needs "
                          f"two classes or varying values", key="--labels")
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = (x - mean) / std  # standardised, so that the ridge term treats every dimension alike
    if values.numel() == 2:
        target = (y == values[1]).double()
        weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], max_iter=BOUNDARY_STEPS, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = (nn.functional.binary_cross_entropy_with_logits(xs @ weight + bias, target)
                    + l2 * weight.square().sum())
            loss.backward()
            return loss

        opt.step(closure)
        weight = weight.detach()
        score = float(((xs @ weight + bias.detach() > 0).double() == target).double().mean())
        kind = "binary"
    else:
        xc, yc = xs, y - y.mean()
        weight = torch.linalg.solve(xc.T @ xc + l2 * x.shape[0] * torch.eye(x.shape[1], dtype=torch.float64),
                                    xc.T @ yc)
        score = float(1 - (yc - xc @ weight).square().sum() / yc.square().sum().clamp_min(1e-12))
        kind = "scalar"
    normal = weight / std  # back to the codes' own coordinates: the label changes along weight / std
    normal = normal / normal.norm().clamp_min(1e-12)
    return Boundary(normal.float(), kind, score, float((x @ normal).std()))


def read_labels(path: str | Path) -> Dict[str, float]:
    """A CSV of file name -> label (a header row is allowed): {file stem: float label}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    labels: Dict[str, float] = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise LoadError(f"{path}, line {n}: expected 'file name,label', got {row}")
            try:
                value = float(row[1])
            except ValueError:
                if n == 1:
                    continue  # a header
                raise LoadError(f"{path}, line {n}: the label '{row[1]}' is not a number") from None
            labels[Path(row[0].strip()).stem] = value
    if not labels:
        raise LoadError(f"{path}: no 'file name,label' rows")
    return labels


def codes_with_labels(codes_dir: str | Path, labels: Dict[str, float], n_latent: int,
                      w_dim: int) -> Tuple[List[str], torch.Tensor, torch.Tensor]:
    """The W+ codes (N, n_latent, w_dim) of `codes_dir` (written by `translate invert`) that have a label."""
    from translate.tools.invert import load_code

    files = sorted(Path(codes_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"--codes {codes_dir}: no .safetensors codes (write them with `translate invert`)")
    stems, codes, ys = [], [], []
    for f in files:
        if f.stem in labels:
            w = load_code(f)
            if tuple(w.shape) != (n_latent, w_dim):
                raise LoadError(f"{f}: the code is {tuple(w.shape)}, the prior takes {(n_latent, w_dim)}")
            stems.append(f.stem)
            codes.append(w)
            ys.append(labels[f.stem])
    missing = len(files) - len(stems)
    if len(stems) < 2:
        raise ConfigError(f"--codes {codes_dir}: only {len(stems)} of {len(files)} codes have a label in the CSV "
                          f"(file names are matched by stem)", key="--codes")
    if missing:
        import warnings

        warnings.warn(f"{missing} code(s) in {codes_dir} have no label and are left out", stacklevel=2)
    return stems, torch.stack(codes), torch.tensor(ys)


# the toy faces' known attributes, from their parameters (datamodules.toyfaces.FaceParams)
TOYFACE_ATTRIBUTES: Dict[str, Callable[[object], float]] = {
    "yaw": lambda p: float(p.yaw),  # head turn, degrees (> 0 faces the image right)
    "glasses": lambda p: float(p.glasses),  # 1 with glasses
    "hair_lightness": lambda p: float(sum(p.hair_colour)) / (3 * 255.0),  # 0 black .. 1 white hair
    "smile": lambda p: float(p.mouth_curve),  # > 0 corners up
}


def toyface_labels(n: int, attribute: str, seed: int = 0, split: str = "train") -> List[float]:
    from datamodules.toyfaces import face_params

    if attribute not in TOYFACE_ATTRIBUTES:
        raise ConfigError(f"--attribute: expected one of {list(TOYFACE_ATTRIBUTES)}, got '{attribute}'",
                          key="--attribute")
    return [TOYFACE_ATTRIBUTES[attribute](face_params(seed, split, i)) for i in range(n)]


def boundary_direction(codes: torch.Tensor, labels: torch.Tensor, layers: Sequence[int], G: nn.Module,
                       how: Dict[str, object]) -> Direction:
    """The InterFaceGAN direction of W+ codes (N, n_latent, w_dim): the boundary of their mean over `layers`; its
    scale is the std of the prior's W along the normal, as for the other kinds (the codes' own std is kept in
    `how`: an encoder that has not learned much gives codes that hardly vary)."""
    b = fit_boundary(codes[:, list(layers)].mean(1), labels)
    return Direction(b.normal, list(layers), w_scale(G, b.normal), "boundary", prior_fingerprint(G.synthesis),
                     int(G.num_ws), {**how, "kind": b.kind, "score": round(b.score, 4), "n": len(labels),
                                     "codes_std": round(b.scale, 6)})


# ---- `translate directions`: make and write them ---------------------------------------------------------------
def make_sefa(G: nn.Module, layers: Sequence[int], num: int, out: str | Path) -> List[Path]:
    """The `num` leading SeFa directions of `layers`, as out/sefa_<layers>_<k>.safetensors."""
    check_num(num)
    vectors, values = sefa(G.synthesis, layers, num)
    fp, tag = prior_fingerprint(G.synthesis), format_layers(layers)
    return [Direction(v, list(layers), w_scale(G, v), "sefa", fp, int(G.num_ws),
                      {"rank": k, "eigenvalue": round(float(e), 6)}).save(Path(out) / f"sefa_{tag}_{k:02d}.safetensors")
            for k, (v, e) in enumerate(zip(vectors, values))]


def make_ganspace(G: nn.Module, layers: Sequence[int], num: int, out: str | Path,
                  samples: int = GANSPACE_SAMPLES, seed: int = 0) -> List[Path]:
    """The `num` leading GANSpace components, applied to `layers`, as out/ganspace_<layers>_<k>.safetensors."""
    check_num(num)
    if samples < 2 * int(G.w_dim):
        raise ConfigError(f"--samples: expected at least 2 x w_dim = {2 * int(G.w_dim)} W samples, got {samples}",
                          key="--samples")
    vectors, stds, _ = ganspace(G, num, samples, seed)
    total = float(sample_w(G, samples, seed).var(0).sum())
    fp, tag = prior_fingerprint(G.synthesis), format_layers(layers)
    return [Direction(v, list(layers), float(s), "ganspace", fp, int(G.num_ws),
                      {"rank": k, "variance_ratio": round(float(s) ** 2 / total, 6), "samples": samples,
                       "seed": seed}).save(Path(out) / f"ganspace_{tag}_{k:02d}.safetensors")
            for k, (v, s) in enumerate(zip(vectors, stds))]


def check_num(num: int) -> None:
    if not isinstance(num, int) or num < 1:
        raise ConfigError(f"--num: expected a number of directions >= 1, got {num!r}", key="--num")


def toyface_codes(net: nn.Module, n: int, seed: int = 0, refine_steps: int = 0) -> torch.Tensor:
    """W+ codes (n, n_latent, w_dim) of the first n toy faces of (seed, train), inverted at the net's output size
    (the encoder, optionally refined)."""
    from datamodules.toyfaces import ToyFaces
    from translate.tools.invert import invert_image, output_size

    faces = ToyFaces(n, output_size(net), seed=seed, split="train")
    codes = []
    for i in range(n):
        img = torch.from_numpy(faces[i]["image"]).permute(2, 0, 1).float() / 127.5 - 1
        codes.append(invert_image(net, img, refine_steps=refine_steps).w)
    return torch.stack(codes)


def make_boundary(G: nn.Module, layers: Sequence[int], out: str | Path, codes: torch.Tensor, labels: torch.Tensor,
                  name: str, how: Dict[str, object]) -> Path:
    """The InterFaceGAN direction of labelled W+ codes of the prior G, as out/boundary_<name>.safetensors."""
    return boundary_direction(codes, labels, layers, G, how).save(Path(out) / f"boundary_{name}.safetensors")
