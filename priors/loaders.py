"""Load StyleGAN2 and StyleGAN3 generators from the published formats, strictly, without executing code from a file.

- NVIDIA: a `{"init_kwargs", "state_dict"}` .pt, or a network pickle (.pkl) read through an allow-list unpickler
  that rebuilds tensors and records NVIDIA's persistent objects as inert stubs (their embedded source is ignored).
- rosinality: a `{"g_ema", "latent_avg"}` .pt, or a pSp checkpoint whose generator keys are under `decoder.`,
  mapped onto our modules by an explicit key map (ROSINALITY_KEY_MAP).
- ours: `prior.safetensors` + `prior.json` in a folder (or a file pair X.safetensors + X.json), written by
  `save_prior`; the other formats convert into it (`convert_prior`).
Every loader is strict: each key of the source is used, each parameter and buffer of the module is set, every shape
matches, or one error lists what did not fit. `load_prior(path)` picks the format.
StyleGAN3 generators (priors.stylegan3) come in NVIDIA's two formats and in ours; they are told from StyleGAN2 ones by
their weights (the Fourier-feature input `synthesis.input.*`), and their filters are read from the file, never designed.
"""
from __future__ import annotations

import json
import pickle
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Tuple, Union

import torch

from safeio import (SAFE_TORCH_LOAD_GLOBALS, ConfigError, LoadError, PersistentStub, SafeUnpickler,
                    UnsafePickleError, file_on_path, read_json_object, read_safetensors, strict_load,
                    torch_load_failure, write_atomic)
from priors.ops import setup_filter
from priors import stylegan3
from priors.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

PRIOR_FORMAT = "translate-stylegan2-prior"
PRIOR_FORMAT_VERSION = 1
PRIOR_JSON, PRIOR_WEIGHTS = "prior.json", "prior.safetensors"
W_AVG_SAMPLES = 10_000  # z samples that estimate w_avg when a rosinality file has no latent_avg


PriorLoadError = LoadError  # a prior file that cannot be loaded: unknown format, keys or shapes, unsafe content
AnyGenerator = Union[Generator, stylegan3.Generator]
ARCHITECTURES = ("stylegan2", "stylegan3")


def is_stylegan3(keys) -> bool:
    """Whether a generator state dict is StyleGAN3's: it has the Fourier-feature input (StyleGAN2 starts from a
    learned constant, synthesis.b4.const)."""
    return any(str(k).startswith("synthesis.input.") for k in keys)


# ------------------------------------------------------------------------------------------ NVIDIA network pickles

def read_network_pickle(path: str | Path) -> Any:
    """The content of an NVIDIA network pickle (.pkl), with networks as PersistentStub records."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network pickle not found: {path}")
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, RuntimeError) as e:
        raise PriorLoadError(f"{path}: not a readable network pickle ({type(e).__name__}: {e})") from e


def _nvidia_config(init_args: Tuple, init_kwargs: Dict[str, Any], source: str, sg3: bool = False):
    names = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")
    names += () if sg3 else ("synthesis_kwargs",)  # StyleGAN3 takes the synthesis arguments as keywords
    if len(init_args) > len(names):
        raise PriorLoadError(f"{source}: {len(init_args)} positional constructor arguments, expected at most "
                             f"{len(names)}")
    kwargs = dict(zip(names, init_args), **init_kwargs)
    try:
        return (stylegan3.GeneratorConfig if sg3 else GeneratorConfig).from_nvidia(kwargs, source)
    except ValueError as e:
        raise PriorLoadError(str(e)) from None


def _nvidia_generator(init_args: Tuple, init_kwargs: Dict[str, Any], sd: Mapping[str, torch.Tensor],
                      source: str) -> AnyGenerator:
    """NVIDIA's StyleGAN2 or StyleGAN3 generator from its constructor arguments and state dict, strictly."""
    if is_stylegan3(sd):
        G = stylegan3.Generator(_nvidia_config(init_args, init_kwargs, source, sg3=True), design_filters=False)
    else:
        G = Generator(_nvidia_config(init_args, init_kwargs, source))
    return strict_load(G, sd, source).eval()


def _pickled_network(path: str | Path, key: str, kind: str) -> Tuple[PersistentStub, str]:
    """The network `key` of an NVIDIA network pickle, checked to be a `kind` (Generator / Discriminator), and the
    source name for messages."""
    data = read_network_pickle(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), PersistentStub):
        found = list(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise PriorLoadError(f"{path}: no '{key}' network in this pickle (found {found})")
    stub = data[key]
    if not stub.class_name.endswith(kind):
        raise PriorLoadError(f"{path}: '{key}' is a {stub.class_name}, expected a StyleGAN {kind}")
    return stub, f"{path} [{key}]"


def load_nvlabs_pickle(path: str | Path, key: str = "G_ema") -> AnyGenerator:
    """The generator `key` (G_ema: the weight average used for sampling) of an NVIDIA network pickle (StyleGAN2 or
    StyleGAN3)."""
    stub, source = _pickled_network(path, key, "Generator")
    return _nvidia_generator(stub.init_args, stub.init_kwargs, stub.tensors(), source)


def load_nvlabs_discriminator(path: str | Path, key: str = "D") -> Discriminator:
    """The discriminator `key` of an NVIDIA network pickle (residual architecture only)."""
    stub, source = _pickled_network(path, key, "Discriminator")
    names = ("c_dim", "img_resolution", "img_channels")
    kwargs = dict(zip(names, stub.init_args), **stub.init_kwargs)
    epilogue = dict(kwargs.pop("epilogue_kwargs", None) or {})
    fields = {k: kwargs.pop(k) for k in ("c_dim", "img_resolution", "img_channels", "channel_base", "channel_max",
                                         "conv_clamp", "cmap_dim") if k in kwargs}
    fields.update({k: epilogue.pop(k) for k in ("mbstd_group_size", "mbstd_num_channels") if k in epilogue})
    kwargs.pop("num_fp16_res", None)  # precision only
    block = dict(kwargs.pop("block_kwargs", None) or {})
    block.pop("freeze_layers", None)  # which blocks training froze (StyleGAN3's train.py): not the architecture
    kwargs.update({f"block_kwargs.{k}": v for k, v in block.items()})
    problems = [f"{k}={v!r}" for k, v in {**kwargs, **epilogue}.items()
                if v and not (k == "architecture" and v == "resnet")]
    if problems:
        raise PriorLoadError(f"{source}: not a supported StyleGAN2 discriminator configuration: unsupported "
                             f"{', '.join(problems)}")
    D = Discriminator(DiscriminatorConfig(**fields))
    return strict_load(D, _drop_block_filters(stub.tensors(), D, source), source).eval()


def _drop_block_filters(sd: Mapping[str, torch.Tensor], D: Discriminator, source: str) -> Dict[str, torch.Tensor]:
    """NVIDIA's discriminator blocks also keep their resampling filter at block level (`b64.resample_filter`); ours
    keep it in the layers only. Checked equal to the layers' filter, then dropped."""
    out = dict(sd)
    for res in D.block_resolutions:
        t = out.pop(f"b{res}.resample_filter", None)
        if t is not None and not torch.equal(t, getattr(D, f"b{res}").conv1.resample_filter):
            raise PriorLoadError(f"{source}: b{res}.resample_filter is not StyleGAN2's [1, 3, 3, 1] filter")
    return out


def load_discriminator_checkpoint(path: str | Path) -> Discriminator:
    """The discriminator `net_d` of a checkpoint written by this framework's StyleGAN2 training (`method:
    stylegan2`), with its architecture from the checkpoint's model config; read with weights_only=True."""
    ckpt = _torch_load(path)
    model = (ckpt.get("hyper_parameters") or {}).get("model") if isinstance(ckpt, Mapping) else None
    sd = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    if not isinstance(model, Mapping) or not isinstance(sd, Mapping) or not any(k.startswith("net_d.") for k in sd):
        raise PriorLoadError(f"{path}: not a StyleGAN2 training checkpoint of this framework (expected "
                             "hyper_parameters.model and net_d.* weights); NVIDIA pickles (.pkl) are read too")
    D = Discriminator(DiscriminatorConfig(
        img_resolution=int(model.get("resolution", 256)),
        img_channels=int(ckpt["hyper_parameters"].get("output_nc", 3)),
        channel_base=int(model.get("channel_base", 32768)), channel_max=int(model.get("channel_max", 512)),
        mbstd_group_size=model.get("mbstd_group_size", 4), conv_clamp=model.get("conv_clamp")))
    return strict_load(D, {k[len("net_d."):]: v for k, v in sd.items() if k.startswith("net_d.")}, str(path)).eval()


def load_discriminator(path: str | Path) -> Discriminator:
    """A trained StyleGAN2 discriminator: `D` of an NVIDIA network pickle (.pkl), or `net_d` of a checkpoint of this
    framework's StyleGAN2 training. Strict, and nothing in the file is executed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"discriminator weights not found: {path}")
    return load_nvlabs_discriminator(path) if path.suffix == ".pkl" else load_discriminator_checkpoint(path)


def load_nvlabs_state(obj: Mapping[str, Any], source: str) -> AnyGenerator:
    """NVIDIA layout: {"init_kwargs": Generator's constructor arguments, "state_dict": its state dict} (StyleGAN2 or
    StyleGAN3)."""
    if not isinstance(obj["init_kwargs"], Mapping) or not isinstance(obj["state_dict"], Mapping):
        raise PriorLoadError(f"{source}: init_kwargs and state_dict must be dicts, got "
                             f"{type(obj['init_kwargs']).__name__} and {type(obj['state_dict']).__name__}")
    return _nvidia_generator((), dict(obj["init_kwargs"]), obj["state_dict"], source)


# ------------------------------------------------------------------------------------------------------ rosinality
# rosinality/stylegan2-pytorch implements the same network; its tensors map one to one onto ours:
#   style.{i+1}.weight/bias (EqualLinear: weight / lr_mul stored, same run-time scale) -> mapping.fc{i}.*
#   input.input (1, C, 4, 4)                  -> synthesis.b4.const (C, 4, 4)
#   <conv>.conv.weight (1, O, I, k, k)         -> <layer>.weight (O, I, k, k): its 1 / sqrt(I k k) scale is our
#                                                 ToRGB weight_gain, and cancels in demodulated layers
#   <conv>.conv.modulation.*                   -> <layer>.affine.* (both EqualLinear, bias_init 1)
#   <conv>.noise.weight (1,)                   -> <layer>.noise_strength ()
#   <conv>.activate.bias                       -> <layer>.bias (FusedLeakyReLU = bias + lrelu 0.2 * sqrt(2))
#   noises.noise_{j} (1, 1, r, r)              -> the j-th layer's noise_const (r, r)
#   to_rgb*.bias (1, C, 1, 1)                  -> torgb.bias (C,)
#   latent_avg                                 -> mapping.w_avg
# Its upsampling conv is a transposed convolution with the stored kernel, i.e. a true convolution: exactly our
# SynthesisLayer with up=2, which runs with flip_weight=False, so the kernel is copied unflipped. Its blur kernels
# (blur.kernel, upsample.kernel) are [1, 3, 3, 1] filters times factor^2 = 4; they are checked, not copied (our
# resampling filters are the same filter, with the gain applied by upsample2d / conv2d_resample).

def _squeeze0(t: torch.Tensor) -> torch.Tensor:
    return t[0]


def _scalar(t: torch.Tensor) -> torch.Tensor:
    return t.reshape([])


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)


def _noise(t: torch.Tensor) -> torch.Tensor:
    return t[0, 0]


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def rosinality_key_map(n_mlp: int, n_up: int) -> List[Tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]]:
    """(rosinality key, our key, transform) for a generator with n_mlp mapping layers and n_up upsampling blocks."""
    kmap: List[Tuple[str, str, Callable]] = []
    for i in range(n_mlp):
        kmap += [(f"style.{i + 1}.weight", f"mapping.fc{i}.weight", _identity),
                 (f"style.{i + 1}.bias", f"mapping.fc{i}.bias", _identity)]
    kmap.append(("input.input", "synthesis.b4.const", _squeeze0))

    def conv(src: str, dst: str, noise_idx: int) -> None:
        kmap.extend([(f"{src}.conv.weight", f"{dst}.weight", _squeeze0),
                     (f"{src}.conv.modulation.weight", f"{dst}.affine.weight", _identity),
                     (f"{src}.conv.modulation.bias", f"{dst}.affine.bias", _identity),
                     (f"{src}.noise.weight", f"{dst}.noise_strength", _scalar),
                     (f"{src}.activate.bias", f"{dst}.bias", _identity),
                     (f"noises.noise_{noise_idx}", f"{dst}.noise_const", _noise)])

    def torgb(src: str, dst: str) -> None:
        kmap.extend([(f"{src}.conv.weight", f"{dst}.weight", _squeeze0),
                     (f"{src}.conv.modulation.weight", f"{dst}.affine.weight", _identity),
                     (f"{src}.conv.modulation.bias", f"{dst}.affine.bias", _identity),
                     (f"{src}.bias", f"{dst}.bias", _flat)])

    conv("conv1", "synthesis.b4.conv1", 0)
    torgb("to_rgb1", "synthesis.b4.torgb")
    for i in range(n_up):
        res = 8 * 2**i
        conv(f"convs.{2 * i}", f"synthesis.b{res}.conv0", 2 * i + 1)
        conv(f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1", 2 * i + 2)
        torgb(f"to_rgbs.{i}", f"synthesis.b{res}.torgb")
    return kmap


def rosinality_kernel_keys(n_up: int) -> List[str]:
    """The blur-kernel buffers of a rosinality generator (checked, not copied)."""
    return [k for i in range(n_up) for k in (f"convs.{2 * i}.conv.blur.kernel", f"to_rgbs.{i}.upsample.kernel")]


def _channels_config(channels: Dict[int, int], source: str) -> Tuple[int, int]:
    """(channel_base, channel_max) with min(channel_base // res, channel_max) == channels[res] for every res."""
    cmax = max(channels.values())
    below = {r: c for r, c in channels.items() if c < cmax}
    base = min(c * r for r, c in below.items()) if below else cmax * max(channels)
    if any(min(base // r, cmax) != c for r, c in channels.items()):
        raise PriorLoadError(f"{source}: channel counts per resolution {channels} cannot be expressed as "
                             "min(channel_base // res, channel_max)")
    return base, cmax


def _rosinality_config(sd: Mapping[str, torch.Tensor], source: str) -> Tuple[GeneratorConfig, int, int]:
    n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
    n_up = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    needed = ["input.input", "style.1.weight", "to_rgb1.conv.weight"] + [f"convs.{2 * i}.conv.weight"
                                                                         for i in range(n_up)]
    missing = [k for k in needed if k not in sd]
    if missing:
        raise PriorLoadError(f"{source}: not a rosinality StyleGAN2 generator: missing {', '.join(missing)} "
                             f"(first keys: {', '.join(list(sd)[:5])})")
    channels = {4: sd["input.input"].shape[1]}
    channels.update({8 * 2**i: sd[f"convs.{2 * i}.conv.weight"].shape[1] for i in range(n_up)})
    base, cmax = _channels_config(channels, source)
    w_dim = sd["style.1.weight"].shape[1]
    cfg = GeneratorConfig(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=4 * 2**n_up,
                          img_channels=sd["to_rgb1.conv.weight"].shape[1], channel_base=base, channel_max=cmax,
                          mapping_layers=n_mlp)
    return cfg, n_mlp, n_up


def _latent_avg(latent_avg: torch.Tensor, w_dim: int, source: str) -> torch.Tensor:
    """rosinality / pSp keep it as (w_dim,), (1, w_dim) or repeated per layer (n, w_dim)."""
    rows = latent_avg.detach().float().reshape(-1, w_dim) if latent_avg.ndim and latent_avg.shape[-1] == w_dim else None
    if rows is None or not torch.equal(rows, rows[:1].expand_as(rows)):
        raise PriorLoadError(f"{source}: latent_avg of shape {tuple(latent_avg.shape)} is not one w of size {w_dim} "
                             "(per-layer averages are not supported)")
    return rows[0]


def load_rosinality(obj: Mapping[str, Any], source: str) -> Generator:
    """rosinality `{"g_ema", "latent_avg"}`, or a pSp checkpoint: `state_dict` (or the dict itself) with the
    generator under `decoder.` (the encoder is ignored) and a top-level `latent_avg`."""
    if "g_ema" in obj:
        sd = dict(obj["g_ema"])
    else:
        state = obj["state_dict"] if "state_dict" in obj else obj
        sd = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
        if not sd:
            raise PriorLoadError(f"{source}: a checkpoint without 'g_ema' or 'decoder.*' generator weights "
                                 f"(keys: {', '.join(list(state)[:8])})")
    cfg, n_mlp, n_up = _rosinality_config(sd, source)
    kmap = rosinality_key_map(n_mlp, n_up)
    kernels = rosinality_kernel_keys(n_up)
    missing = [src for src, _, _ in kmap if src not in sd]
    leftover = sorted(set(sd) - {src for src, _, _ in kmap} - set(kernels))
    if missing or leftover:
        raise PriorLoadError(f"{source}: does not fit the rosinality key map: "
                             + "; ".join(([f"missing ({len(missing)}): {', '.join(missing[:8])}"] if missing else [])
                                         + ([f"keys not used ({len(leftover)}): {', '.join(leftover[:8])}"]
                                            if leftover else [])))
    blur = setup_filter([1, 3, 3, 1]) * 4  # rosinality stores its resampling kernels with the gain factor^2
    for k in kernels:
        if k in sd and (sd[k].shape != blur.shape or not torch.allclose(sd[k].float(), blur, atol=1e-6)):
            raise PriorLoadError(f"{source}: {k}: only the [1, 3, 3, 1] blur kernel is supported, got "
                                 f"{sd[k].tolist()}")
    ours: "OrderedDict[str, torch.Tensor]" = OrderedDict((dst, fn(sd[src])) for src, dst, fn in kmap)
    G = Generator(cfg)
    for name, buf in G.named_buffers():  # the resampling filters are rebuilt (checked above)
        if name.endswith("resample_filter"):
            ours[name] = buf.clone()
    latent_avg = obj.get("latent_avg")
    ours["mapping.w_avg"] = (_latent_avg(latent_avg, cfg.w_dim, source) if latent_avg is not None
                             else G.mapping.w_avg.clone())
    strict_load(G, ours, source).eval()
    if latent_avg is None:
        warnings.warn(f"{source}: no latent_avg; w_avg (the truncation centre) is estimated as the mean w of "
                      f"{W_AVG_SAMPLES} random z, as rosinality's mean_latent does", RuntimeWarning, stacklevel=3)
        with torch.no_grad():
            z = torch.randn(W_AVG_SAMPLES, cfg.z_dim, generator=torch.Generator().manual_seed(0))
            G.mapping.w_avg.copy_(G.mapping(z)[:, 0].mean(dim=0))
    return G


# ------------------------------------------------------------------------------------------------------ our format

def _pair_paths(path: Path) -> Tuple[Path, Path]:
    """(json, safetensors) of our format for a folder, prior.json / prior.safetensors, or X.json / X.safetensors."""
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix(".json"), path.with_suffix(".safetensors")
    return path / PRIOR_JSON, path / PRIOR_WEIGHTS


def save_prior(G: AnyGenerator, out: str | Path) -> Path:
    """Write G as `prior.safetensors` + `prior.json` into the folder `out` (or as the pair out.safetensors +
    out.json when `out` ends in .safetensors or .json). Returns the folder (or the .json)."""
    from safetensors.torch import save_file

    out = Path(out)
    json_path, weights_path = _pair_paths(out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    meta = {"format": PRIOR_FORMAT, "format_version": PRIOR_FORMAT_VERSION,
            "architecture": "stylegan3" if isinstance(G, stylegan3.Generator) else "stylegan2",
            "weights": weights_path.name, "generator": G.config.to_dict(), "n_latent": G.num_ws,
            "w_avg": tensors["mapping.w_avg"].tolist() if "mapping.w_avg" in tensors else None}
    write_atomic(weights_path, lambda p: save_file(tensors, p, metadata={"format": PRIOR_FORMAT}))
    write_atomic(json_path, lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return json_path if out.suffix in (".json", ".safetensors") else out


def load_own(path: str | Path) -> AnyGenerator:
    """Our format: a folder with prior.json + prior.safetensors, or one file of an X.json + X.safetensors pair."""
    json_path, weights_path = _pair_paths(Path(path))
    for p in (json_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"prior file not found: {p} (a prior is {json_path.name} + {weights_path.name})")
    meta = read_json_object(json_path, PriorLoadError)
    if meta.get("format") != PRIOR_FORMAT:
        raise PriorLoadError(f"{json_path}: not a prior description (expected format '{PRIOR_FORMAT}')")
    if meta.get("format_version") != PRIOR_FORMAT_VERSION:
        raise PriorLoadError(f"{json_path}: format_version {meta.get('format_version')!r} is not supported "
                             f"(this version reads {PRIOR_FORMAT_VERSION})")
    arch = meta.get("architecture", "stylegan2")
    if arch not in ARCHITECTURES:
        raise PriorLoadError(f"{json_path}: architecture {arch!r} is not supported (expected one of {ARCHITECTURES})")
    sg3 = arch == "stylegan3"
    try:
        cfg = (stylegan3.GeneratorConfig if sg3 else GeneratorConfig).from_dict(meta["generator"], str(json_path))
    except (KeyError, TypeError, ValueError) as e:
        raise PriorLoadError(f"{json_path}: bad 'generator' section ({e})") from None
    G = stylegan3.Generator(cfg, design_filters=False) if sg3 else Generator(cfg)
    G = strict_load(G, read_safetensors(weights_path), str(weights_path)).eval()
    if meta.get("w_avg") is not None and hasattr(G.mapping, "w_avg"):
        if not torch.equal(torch.tensor(meta["w_avg"], dtype=torch.float32), G.mapping.w_avg):
            raise PriorLoadError(f"{json_path}: w_avg differs from mapping.w_avg in {weights_path.name}")
    return G


# ---------------------------------------------------------------------------------------------- one entry point
def _torch_load(path: Path) -> Any:
    """torch.load on the CPU with weights_only=True (plus the argparse Namespace of pSp's opts); a file that cannot
    be read that way is a PriorLoadError naming it."""
    try:
        with torch.serialization.safe_globals(SAFE_TORCH_LOAD_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read is reported with the file
        raise PriorLoadError(f"cannot read {path} with torch.load(weights_only=True): {torch_load_failure(e)}") from e


def load_prior(path: str | Path) -> AnyGenerator:
    """Any supported format -> generator in eval mode: our folder / .json / .safetensors, an NVIDIA network .pkl,
    or a .pt/.pth (NVIDIA init_kwargs + state_dict, rosinality g_ema, pSp decoder.*). NVIDIA's files and ours
    may hold a StyleGAN3 generator (priors.stylegan3.Generator); the others are StyleGAN2."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prior not found: {path}")
    if path.is_dir() or path.suffix in (".json", ".safetensors"):
        return load_own(path)
    if path.suffix == ".pkl":
        return load_nvlabs_pickle(path)
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and "init_kwargs" in obj and "state_dict" in obj:
        return load_nvlabs_state(obj, str(path))
    if isinstance(obj, Mapping) and ("g_ema" in obj or "state_dict" in obj
                                     or any(str(k).startswith("decoder.") for k in obj)):
        return load_rosinality(obj, str(path))
    keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise PriorLoadError(f"{path}: not a known StyleGAN2/3 format (found {keys}; expected NVIDIA init_kwargs + "
                         "state_dict, rosinality g_ema, or a pSp state_dict with decoder.*)")


def convert_prior(in_path: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Load any supported format and write it in ours (see save_prior). Existing prior files at `out_dir` are
    replaced only with `overwrite`; the source itself never is."""
    targets = _pair_paths(Path(out_dir))
    for existing in (f for f in targets if f.exists()):
        if existing.is_dir():
            raise IsADirectoryError(f"{existing} is a folder; cannot write the prior there")
        if any(existing.resolve() == f.resolve() for f in (Path(in_path), *_pair_paths(Path(in_path)))):
            raise ConfigError(f"out {out_dir}: refusing to overwrite the source prior {in_path}: choose another "
                              f"output", key="out")
        if not overwrite:
            raise FileExistsError(f"{existing} exists; pass --overwrite to replace it")
    blocker = file_on_path(Path(out_dir) if Path(out_dir).suffix not in (".json", ".safetensors")
                           else Path(out_dir).parent)
    if blocker is not None:
        raise NotADirectoryError(f"cannot write the prior under {out_dir}: {blocker} is a file")
    return save_prior(load_prior(in_path), out_dir)
