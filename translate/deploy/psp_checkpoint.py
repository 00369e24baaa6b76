"""Read a published pSp checkpoint (eladrich/pixel2style2pixel) on any machine, strictly and without running code.

The file is `{"state_dict": {"encoder.*", "decoder.*"}, "latent_avg": (n_styles, w_dim), "opts": {...}}`, saved from
a GPU run: `latent_avg` is usually a CUDA tensor, so it is read with map_location="cpu" and weights_only=True.
- `encoder.*` is one of nets.encoders.ENCODERS; its architecture is read off the weights and checked against `opts`.
- `decoder.*` is a rosinality StyleGAN2 generator (noise and blur-kernel buffers included) and goes through the
  prior's rosinality loader, which maps every key strictly.
- `opts` of older checkpoints lack fields that the current reference reads; they are backfilled from the weights
  where the weights tell (encoder_type, input_nc, output_size, start_from_latent_avg) or with the reference's defaults
  (label_nc 0, learn_in_w False), and `backfilled` says which and from where. `input_size` is not a reference
  field (pSp always resizes to 256): the GradualStyleEncoder's heads fix it; for the single-head encoders it is 256
  unless opts names another (checkpoints that this framework writes from smaller runs).
- e4e checkpoints (omertov/encoder4editing) have pSp's layout key for key: only `opts["encoder_type"] ==
  "Encoder4Editing"` tells them apart, and it selects nets.encoders.Encoder4Editing. Their `opts["stylegan_size"]` may
  be stale (e4e issue #56): the number of heads and the decoder's size come from the keys, and a disagreeing
  stylegan_size is only noted.
- `latent_avg` is kept as stored and added row by row, as the reference does (real files repeat one w; distinct rows
  are loaded too). The decoder's truncation centre (w_avg) is its one w, or the mean of distinct rows (noted).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from nets.encoders import IRBackboneNet, build_encoder, encoder_spec_from_state_dict, n_styles_for
from safeio import LoadError, check_fits, strict_load
from priors.loaders import load_rosinality
from priors.stylegan2 import Generator
from translate.deploy.checkpoints import load_checkpoint

PSP_INPUT_SIZE = 256  # pSp resizes every input to 256 px (its transforms); the single-head encoders accept any size
PREFIXES = ("encoder.", "decoder.")
E4E = "Encoder4Editing"  # opts["encoder_type"] of an e4e checkpoint (nets.encoders.Encoder4Editing)


class PSPCheckpointError(LoadError):
    """A file that is not a pSp checkpoint, or whose parts do not agree with each other."""


@dataclass
class PSPCheckpoint:
    encoder_state: Dict[str, torch.Tensor]  # the encoder.* weights, prefix stripped
    encoder_spec: Dict[str, Any]  # build_encoder arguments (incl. "name") that fit encoder_state
    decoder: Generator  # the StyleGAN2 generator in eval mode (w_avg = latent_avg when given)
    latent_avg: Optional[torch.Tensor]  # float32 on the CPU, as stored: (n_styles, w_dim), (1, w_dim) or (w_dim,)
    opts: Dict[str, Any]  # the training options, with missing fields backfilled
    backfilled: Dict[str, str] = field(default_factory=dict)  # opts field -> what was filled in and why

    def build_encoder(self) -> IRBackboneNet:
        """The encoder with its weights, loaded strictly, in eval mode."""
        return strict_load(build_encoder(**self.encoder_spec), self.encoder_state, "pSp encoder.*").eval()


def _split_state(state: Mapping[str, torch.Tensor], source: str) -> Dict[str, Dict[str, torch.Tensor]]:
    parts: Dict[str, Dict[str, torch.Tensor]] = {p: {} for p in PREFIXES}
    other = []
    for k, v in state.items():
        prefix = next((p for p in PREFIXES if k.startswith(p)), None)
        if prefix is None:
            other.append(k)
        else:
            parts[prefix][k[len(prefix):]] = v
    if other:
        raise PSPCheckpointError(f"{source}: state_dict keys outside encoder.* / decoder.* ({len(other)}): "
                                 f"{', '.join(other[:8])}")
    empty = [p + "*" for p, sd in parts.items() if not sd]
    if empty:
        raise PSPCheckpointError(f"{source}: no {' or '.join(empty)} weights in the state_dict (not a pSp model)")
    return parts


def _backfill_opts(opts: Dict[str, Any], spec: Dict[str, Any], decoder: Generator, latent_avg: Optional[torch.Tensor],
                   source: str) -> Dict[str, str]:
    """Fill missing fields of `opts` in place; check present ones against the weights. Returns the notes."""
    inferred = {
        "encoder_type": (spec["name"], "read off the encoder weights"),
        "input_nc": (spec["input_nc"], "read off encoder.input_layer.0.weight"),
        "output_size": (decoder.img_resolution, "the decoder's resolution"),
        "input_size": (spec["input_size"], "read off the map2style heads"
                       if spec["name"] in ("GradualStyleEncoder", E4E) else "pSp's input resolution"),
    }
    notes: Dict[str, str] = {}
    for key, (value, how) in inferred.items():
        if key not in opts or opts[key] is None:
            opts[key] = value
            notes[key] = f"{value!r} ({how})"
        elif opts[key] != value:
            raise PSPCheckpointError(f"{source}: opts['{key}'] is {opts[key]!r}, but {how} gives {value!r}")
    defaults = {"label_nc": (0, "the reference's default"), "learn_in_w": (False, "the reference's default"),
                "start_from_latent_avg": (latent_avg is not None, "the reference saves latent_avg exactly when set")}
    for key, (value, how) in defaults.items():
        if key not in opts or opts[key] is None:
            opts[key] = value
            notes[key] = f"{value!r} ({how})"
    return notes


def _truncation_centre(latent_avg: Optional[torch.Tensor]) -> Tuple[Optional[torch.Tensor], str]:
    """One w for the decoder's w_avg from pSp's per-style `latent_avg`, and a note when its rows differ."""
    if latent_avg is None or latent_avg.ndim < 2:
        return latent_avg, ""
    rows = latent_avg.reshape(-1, latent_avg.shape[-1])
    if torch.equal(rows, rows[:1].expand_as(rows)):
        return rows[0], ""
    return rows.mean(0), (f"{rows.shape[0]} distinct rows, added to the codes as stored (as the reference does); "
                          "the decoder's truncation centre is their mean")


def load_psp_checkpoint(path: str | Path) -> PSPCheckpoint:
    """A pSp checkpoint -> encoder weights and architecture, the StyleGAN2 decoder, latent_avg and opts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pSp checkpoint not found: {path}")
    source = str(path)
    ckpt = load_checkpoint(path, map_location="cpu")  # weights_only=True (opts may be a Namespace); CUDA -> CPU
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        found = list(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise PSPCheckpointError(f"{source}: not a pSp checkpoint (expected a 'state_dict' with encoder.* and "
                                 f"decoder.*; found {found})")
    parts = _split_state(ckpt["state_dict"], source)
    raw_opts = ckpt.get("opts") or {}
    opts = dict(vars(raw_opts) if isinstance(raw_opts, argparse.Namespace) else raw_opts)
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor):
            raise PSPCheckpointError(f"{source}: latent_avg is a {type(latent_avg).__name__}, expected a tensor")
        latent_avg = latent_avg.detach().to("cpu", torch.float32)
    if opts.get("start_from_latent_avg") and latent_avg is None:
        raise PSPCheckpointError(f"{source}: opts['start_from_latent_avg'] is set but the checkpoint has no latent_avg")
    try:
        spec = encoder_spec_from_state_dict(parts["encoder."], f"{source} encoder.*",
                                            input_size=opts.get("input_size") or PSP_INPUT_SIZE)
    except ValueError as e:
        raise PSPCheckpointError(str(e)) from None
    if opts.get("encoder_type") == E4E and spec["name"] == "GradualStyleEncoder":
        spec["name"] = E4E  # the same keys: only the opts tell
    w_avg, w_avg_note = _truncation_centre(latent_avg)
    decoder = load_rosinality({"g_ema": parts["decoder."], "latent_avg": w_avg}, f"{source} decoder.*")
    if spec.get("output_size", decoder.img_resolution) != decoder.img_resolution:
        raise PSPCheckpointError(f"{source}: the encoder predicts {n_styles_for(spec['output_size'])} style "
                                 f"vectors, the {decoder.img_resolution}-px decoder takes {decoder.num_ws}")
    spec["output_size"] = decoder.img_resolution
    if spec["w_dim"] != decoder.w_dim:
        raise PSPCheckpointError(f"{source}: the encoder predicts w of size {spec['w_dim']}, the decoder takes "
                                 f"{decoder.w_dim}")
    if latent_avg is not None and latent_avg.shape[-1] != decoder.w_dim:
        raise PSPCheckpointError(f"{source}: latent_avg of shape {tuple(latent_avg.shape)} does not end in the "
                                 f"decoder's w_dim {decoder.w_dim}")
    with torch.device("meta"):  # every key and shape checked now, without allocating the encoder
        check_fits(build_encoder(**spec), parts["encoder."], f"{source} encoder.*")
    notes = _backfill_opts(opts, spec, decoder, latent_avg, source)
    if w_avg_note:
        notes["latent_avg"] = w_avg_note
    stale = opts.get("stylegan_size")
    if stale is not None and stale != decoder.img_resolution:
        notes["stylegan_size"] = (f"{stale!r} in the file is stale: the keys give a {decoder.img_resolution}-px "
                                  f"decoder and {decoder.num_ws} style vectors (e4e issue #56)")
    return PSPCheckpoint(encoder_state=parts["encoder."], encoder_spec=spec, decoder=decoder, latent_avg=latent_avg,
                         opts=opts, backfilled=notes)
