"""Turn weights saved by reference implementations into export bundles that `predict` can use at once."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from nets import inference_copy
from nets.junyanz import import_generator
from safeio import ConfigError


def import_junyanz(
    weights: str | Path, out: str | Path, *, netG: Optional[str] = None, norm: Optional[str] = None,
    use_dropout: Optional[bool] = None, norm_stats: Optional[str] = None, direction: str = "AtoB",
    size: int = 256, overwrite: bool = False,
) -> Path:
    """A reference pix2pix/CycleGAN generator (`latest_net_G.pth`, `*_net_G_A.pth`, ...) -> bundle.

    The architecture is inferred from the state dict (U-Net depth / ResNet blocks, ngf, norm, channels); `netG`,
    `norm` and `use_dropout` override the inference. `norm_stats` "sample" reproduces the reference test script
    (BatchNorm in train mode), "running" its `--eval` flag.
    """
    from translate.deploy.export import export_bundle

    overrides = {k: v for k, v in {"name": netG, "norm": norm, "use_dropout": use_dropout}.items() if v is not None}
    net, spec = import_generator(weights, **overrides)
    stats = norm_stats or "sample"
    mult = int(net.size_multiple)
    side = max(mult, (size // mult) * mult)
    meta = {
        "method": "cyclegan" if spec["name"].startswith("resnet") else "pix2pix",
        "source": {"from": "junyanz", "weights": str(weights)},
        "input_nc": spec["input_nc"],
        "output_nc": spec["output_nc"],
        "value_range": [-1.0, 1.0],
        "size_multiple": mult,
        "direction": direction,
        "norm_stats": stats,
        "generator": spec,
    }
    example = torch.rand(1, spec["input_nc"], side, side) * 2 - 1
    return export_bundle(inference_copy(net, norm_stats=stats, dropout=False), out, meta, example,
                         size_multiple=mult, overwrite=overwrite)


def import_psp(weights: str | Path, out: str | Path, *, overwrite: bool = False, atol: float = 1e-3,
               source: str = "psp") -> Path:
    """A published pSp or e4e checkpoint (`psp_ffhq_encode.pt`, `e4e_ffhq_encode.pt`, ...) -> bundle (encoder +
    decoder, ONNX through the reference ops, torch.export program, weights; the eager backend rebuilds it for
    style-mixed variants). source "e4e" accepts e4e checkpoints only (opts["encoder_type"] Encoder4Editing)."""
    from nets.psp import PSPNet
    from translate.deploy.export import export_bundle
    from translate.deploy.psp_checkpoint import E4E, PSPCheckpointError, load_psp_checkpoint

    if source not in ("psp", "e4e"):
        raise ConfigError(f"--from: expected psp or e4e, got {source!r}", key="--from")
    ckpt = load_psp_checkpoint(weights)
    if source == "e4e" and ckpt.encoder_spec["name"] != E4E:
        raise PSPCheckpointError(f"{weights}: not an e4e checkpoint (opts['encoder_type'] is "
                                 f"{ckpt.opts.get('encoder_type')!r}, e4e's is {E4E!r}); import it with --from psp")
    encoder = ckpt.build_encoder()
    ckpt.encoder_state.clear()  # the encoder holds its own copy: 1 GB less while exporting a 1024-px model
    latent_avg = ckpt.latent_avg if ckpt.latent_avg is not None else ckpt.decoder.mapping.w_avg
    net = PSPNet(encoder, ckpt.decoder, latent_avg, bool(ckpt.opts.get("start_from_latent_avg", True)),
                 resize=None, noise_mode="const").eval().requires_grad_(False)
    net.fused_modconv = False  # the exported graphs take any batch size
    size = int(encoder.input_size)
    n = net.n_styles
    label_nc = int(ckpt.opts.get("label_nc") or 0)
    meta = {
        "method": "psp",
        "source": {"from": source, "weights": str(weights), "backfilled_opts": ckpt.backfilled},
        "input_nc": int(encoder.input_nc),
        "output_nc": 3,
        "value_range": [-1.0, 1.0],
        "size_multiple": size,
        "input_size": size,
        "direction": "AtoB",
        "generator": None,
        "psp": net.spec(),
        # pSp's label_nc: 0 images, 1 sketches, > 1 one-hot label maps (read by predict as class indices)
        "label_nc": label_nc if label_nc > 1 else 0,
        "latent_mask": list(range(8, n)) if n > 8 else [],  # the paper's multi-modal default: fine layers 8+
        "mix_alpha": None,
    }
    if label_nc == 1:  # pSp's sketch transforms are ToTensor without Normalize: sketches in [0, 1]
        meta["input_range"] = [0.0, 1.0]
    example = torch.rand(1, meta["input_nc"], size, size) * 2 - 1
    return export_bundle(net, out, meta, example, dynamic_spatial=False, size_multiple=size, atol=atol,
                         overwrite=overwrite)
