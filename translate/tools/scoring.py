"""Full-reference image scores shared by validation, the demo and `evaluate`: PSNR, SSIM, L1 on [0, 1] images."""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def score_pairs(outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> Dict[str, float]:
    """Mean per-image PSNR/SSIM/L1 of images in [-1, 1] (each (C, H, W); pairs must have equal shapes)."""
    return {m: sum(v) / len(v) for m, v in score_each(outputs, targets).items()}


def score_each(outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> Dict[str, List[float]]:
    """PSNR/SSIM/L1 of each pair of images in [-1, 1] (each (C, H, W); pairs must have equal shapes)."""
    if len(outputs) != len(targets) or not outputs:
        raise ValueError(f"score_pairs: expected two equal, non-empty lists, got {len(outputs)} and {len(targets)}")
    scores: Dict[str, List[float]] = {"psnr": [], "ssim": [], "l1": []}
    for out, ref in zip(outputs, targets):
        if out.shape != ref.shape:
            raise ValueError(f"score_pairs: output {tuple(out.shape)} and target {tuple(ref.shape)} differ in shape")
        o, r = ((out + 1) / 2).clamp(0, 1)[None].float(), ((ref + 1) / 2).clamp(0, 1)[None].float()
        scores["psnr"].append(float(peak_signal_noise_ratio(o, r, data_range=1.0)))
        scores["ssim"].append(float(structural_similarity_index_measure(o, r, data_range=1.0)))
        scores["l1"].append(float((o - r).abs().mean()))
    return scores
