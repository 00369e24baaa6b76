"""`translate edit`: invert images (or read their codes) and move the codes along a latent direction.

For each image: the W+ code w (the encoder, ReStyle or refinement, as `translate invert` finds it; or a code file
written by `invert`), then the edits w + s * scale * n on the chosen layers for every strength s (n and scale from
the direction file, see translate/tools/directions.py). Written per image into OUT/<stem>/: code.safetensors,
reconstruction.png, one edit_<k>_<strength>.png per strength, and strip.png = input | reconstruction | edits
(without an input image when editing codes). Strength 0 renders the reconstruction itself.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F

from nets.psp import PSPNet
from safeio.errors import ConfigError
from translate.tools import directions as dirs
from translate.tools import invert


@dataclass
class Edit:
    stem: str
    w: torch.Tensor  # (n_latent, w_dim), the inverted code
    recon: torch.Tensor  # (3, H, W) in [-1, 1]
    edits: torch.Tensor  # (len(strengths), 3, H, W) in [-1, 1]
    folder: Path


def render_edits(net: PSPNet, w: torch.Tensor, direction: dirs.Direction, strengths: Sequence[float],
                 layers: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Images (len(strengths), 3, H, W) of one code moved along the direction, rendered one at a time as the
    reconstruction is (batched convolutions round differently), so that strength 0 gives exactly its pixels."""
    ws = dirs.apply_direction(w.to(net.latent_avg.device), direction, strengths, layers)
    with torch.no_grad():
        return torch.cat([net.decode(ws[i:i + 1]) for i in range(len(ws))])


def load_checked_direction(net: PSPNet, path: str | Path) -> dirs.Direction:
    """The direction at `path`, refused when it was made for another prior than the net's."""
    d = dirs.load_direction(path)
    dirs.check_direction(d, net.decoder.synthesis, path)
    return d


def write_edit(e: Edit, strengths: Sequence[float], source: Optional[torch.Tensor]) -> None:
    from datamodules.io import write_image
    from priors.generate import save_grid

    e.folder.mkdir(parents=True, exist_ok=True)
    invert.save_code(e.w, e.folder / "code.safetensors")
    write_image(e.folder / "reconstruction.png", invert.to_uint8(e.recon))
    for k, (s, img) in enumerate(zip(strengths, e.edits)):
        write_image(e.folder / f"edit_{k:02d}_{s:+.2f}.png", invert.to_uint8(img))
    row = [e.recon[None], e.edits.cpu()]
    if source is not None:
        size = e.recon.shape[-2:]
        shown = F.interpolate(source[None], size=size, mode="bicubic", align_corners=False).clamp(-1, 1) \
            if source.shape[-2:] != size else source[None]
        row.insert(0, shown.cpu())
    strip = torch.cat(row)
    save_grid(strip, e.folder / "strip.png", nrow=len(strip))


def edit_folder(net: PSPNet, direction: str | Path, strengths: Sequence[float], out: str | Path,
                input: Optional[str | Path] = None, codes: Optional[str | Path] = None,
                layers: Optional[str] = None, **invert_kwargs) -> List[Edit]:
    """Edit every image of `input` (inverted with `invert_kwargs`, see invert.invert_image) or every code of
    `codes`; writes OUT/<stem>/ as the module docstring says."""
    from datamodules.io import BadImageError, list_images

    if (input is None) == (codes is None):
        raise ConfigError("give exactly one of --input (a folder of images) or --codes (a folder of codes)",
                          key="--input")
    d = load_checked_direction(net, direction)  # before anything is inverted
    chosen = None if layers is None else dirs.parse_layers(layers, net.n_styles)
    if not strengths:
        raise ConfigError("--strength: expected at least one strength", key="--strength")
    invert.check_options(**invert_kwargs)
    out = Path(out)
    if input is not None:
        files = list_images(input)
        if out.resolve() == Path(input).resolve():
            raise ConfigError(f"--out {out} is the input folder; choose another folder", key="--out")
    else:
        files = sorted(Path(codes).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"--codes {codes}: no .safetensors codes (write them with `translate invert`)")
    results = []
    for path in files:
        source = None
        if input is not None:
            try:
                source = invert.read_rgb(path)
            except BadImageError as e:
                warnings.warn(f"skipping {path}: {e.reason or e}", stacklevel=2)
                continue
            r = invert.invert_image(net, source, path.stem, **invert_kwargs)
            w, recon = r.w, r.recon
        else:
            w = invert.load_code(path, net)
            with torch.no_grad():
                recon = net.decode(w[None].to(net.latent_avg.device))[0].cpu()
        e = Edit(path.stem, w, recon, render_edits(net, w, d, strengths, chosen).cpu(), out / path.stem)
        write_edit(e, strengths, source)
        results.append(e)
    return results
