"""An int8 copy of a bundle: onnxruntime static quantisation calibrated on the user's images, with its error.

`quantize_bundle(bundle, images, out)` writes a new bundle whose `model_int8.onnx` is what the onnx backend, and
so `predict` on the CPU, runs; the fp32 files stay beside it for the eager and pt2 backends. In it:

- the convolutions are QLinearConv nodes (weights int8 per channel, activations uint8), except those next to the
  input image and the output (`edge_convolutions`), which stay fp32 with the other ops: the image's and the
  output's rounding cost the most error there and they are a small share of the time;
- stride-2 transposed convolutions are first rewritten as their four phase convolutions, and convolutions into
  a few channels as one stride-2 convolution of their phases (translate/deploy/rewrites.py);
- reflection padding runs after the quantisation, on uint8.

Its error against the fp32 bundle is measured on the calibration images and on held-out ones (PSNR of the outputs
in the 8-bit range) and stored in translator.json under "quantization". The int8 bundle is a separate folder the
user chooses: the fp32 bundle stays the default.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from datamodules.io import list_images, read_image
from safeio import default_mode
from safeio.errors import ConfigError
from translate.deploy.export import _move_into_place, check_destination
from translate.deploy.inference import META_FILE, OnnxBackend, Translator, load_translator, read_meta
from translate.deploy.rewrites import (edge_convolutions, quantize_before_padding, rewrite_thin_convolutions,
                                       rewrite_transposed_convolutions)

INT8_FILE = "model_int8.onnx"
NEGLIGIBLE_DB = 45.0  # PSNR from which the int8 outputs count as the fp32 ones


def quantize_bundle(bundle: str | Path, images: str | Path | Sequence[Path], out: str | Path,
                    held_out: float = 0.25, overwrite: bool = False) -> Dict[str, Any]:
    """Write the int8 bundle `out` of `bundle`, calibrated on `images` (a folder or files) less a held-out
    fraction; return its "quantization" entry (PSNR in dB on the calibration and held-out images)."""
    import onnx as onnx_lib
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    folder, meta = read_meta(bundle)
    if meta.get("label_nc") or int(meta["input_nc"]) not in (1, 3):
        raise ConfigError(f"{folder}: int8 calibration reads image files; this bundle takes "
                          f"{'label maps' if meta.get('label_nc') else str(meta['input_nc']) + ' channels'}",
                          key="--model")
    if isinstance(images, (str, Path)):
        files = list_images(images) if Path(images).is_dir() else [Path(images)]
    else:
        files = [Path(f) for f in images]
    if len(files) < 2:
        raise ConfigError(f"calibration: expected at least 2 images (some are held out to measure the error), "
                          f"got {len(files)} in {images}", key="--calibration")
    if not 0 < held_out < 1:
        raise ConfigError(f"held_out: expected a fraction in (0, 1), got {held_out}", key="--held-out")
    n_held = min(len(files) - 1, max(1, round(len(files) * held_out)))
    calibration, held = files[:-n_held], files[-n_held:]
    fp32 = load_translator(folder, backend="onnx", cpu_workers=1)
    inputs = {f: fp32._pad(fp32.from_array(read_image(f, fp32.input_nc))[None]) for f in files}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = [inputs[f].numpy() for f in calibration]

        def get_next(self):
            return {fp32._run.input_name: self.left.pop(0)} if self.left else None

    out = Path(out)
    check_destination(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        names = meta["files"].get("all") or [p.name for p in folder.iterdir()]
        for name in names:
            if name != META_FILE and (folder / name).is_file():
                shutil.copy2(folder / name, tmp / name)
        onnx = folder / meta["files"].get("onnx", "model.onnx")
        # the up layers' transposed convolutions as phase convolutions (onnxruntime has no int8 ConvTranspose), thin
        # convolutions (in bundles exported before the export rewrote them) as stride-2 ones; then QLinearConv
        # nodes for the convolutions only: faster and closer to fp32 than QDQ around every op, whose Q/DQ pairs
        # around ops without int8 kernels (the norms) cost more than they save (benchmarks/README.md)
        graph = onnx_lib.load(str(onnx))
        rewritten = {"transposed_convolutions": rewrite_transposed_convolutions(graph),
                     "thin_convolutions": rewrite_thin_convolutions(graph)}
        kept = edge_convolutions(graph)
        quantize_static(graph, str(tmp / INT8_FILE), Reader(), quant_format=QuantFormat.QOperator,
                        op_types_to_quantize=["Conv"], activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=kept)
        int8_graph = onnx_lib.load(str(tmp / INT8_FILE))
        rewritten["quantized_before_padding"] = quantize_before_padding(int8_graph)
        if rewritten["quantized_before_padding"]:
            onnx_lib.save(int8_graph, str(tmp / INT8_FILE))
        int8 = Translator(meta, OnnxBackend(tmp / INT8_FILE, torch.device("cpu")))
        report = {"method": "onnxruntime static, QLinearConv for the convolutions but those next to the input and "
                            "the output (other ops fp32), int8 weights per channel, uint8 activations (MinMax); "
                            "stride-2 transposed convolutions as phase convolutions",
                  "graph_rewrites": rewritten, "fp32_convolutions": len(kept),
                  "calibration_images": len(calibration), "held_out_images": len(held),
                  "calibration_psnr_db": _psnr(fp32, int8, [inputs[f] for f in calibration]),
                  "held_out_psnr_db": _psnr(fp32, int8, [inputs[f] for f in held]),
                  "negligible_db": NEGLIGIBLE_DB, "fp32_onnx": onnx.name}
        report["negligible"] = min(report["calibration_psnr_db"], report["held_out_psnr_db"]) >= NEGLIGIBLE_DB
        files_entry = {**meta["files"], "onnx": INT8_FILE,
                       "all": sorted(p.name for p in tmp.iterdir()) + [META_FILE]}
        info = {**meta, "files": files_entry, "quantization": report}
        (tmp / META_FILE).write_text(json.dumps(info, indent=2))
        for f in tmp.iterdir():
            os.chmod(f, default_mode())
        os.chmod(tmp, default_mode(directory=True))
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _psnr(fp32: Translator, int8: Translator, xs: List[torch.Tensor]) -> float:
    """Mean PSNR (dB) of the int8 outputs against the fp32 ones, in [0, 1] (the 8-bit range once written)."""
    values = []
    for x in xs:
        a, b = (fp32._net_to_unit(t._run(x)).clamp(0, 1) for t in (fp32, int8))
        mse = float(((a - b) ** 2).mean())
        values.append(99.0 if mse == 0 else min(99.0, 10 * math.log10(1.0 / mse)))
    return round(float(np.mean(values)), 2)
