"""Bundles: files, metadata, parity, atomic writes; every backend of load_translator agrees."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from nets import build_generator, generator_spec, inference_copy
from translate.export import ExportError, export_bundle
from translate.inference import BundleError, load_translator


def meta_for(net, norm_stats="sample"):
    return {"method": "pix2pix", "input_nc": net.input_nc, "output_nc": net.output_nc, "value_range": [-1.0, 1.0],
            "size_multiple": net.size_multiple, "direction": "AtoB", "norm_stats": norm_stats,
            "generator": generator_spec(net)}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    net = build_generator("unet", 3, 1, ngf=4, num_downs=5)
    out = tmp_path_factory.mktemp("b") / "bundle"
    inf = inference_copy(net, "sample")
    export_bundle(inf, out, meta_for(net), torch.rand(1, 3, 64, 64) * 2 - 1, size_multiple=32)
    return out, inf


def test_bundle_files_and_metadata(bundle):
    out, _ = bundle
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.pt2", "translator.json",
                                                     "weights.safetensors"]
    meta = json.loads((out / "translator.json").read_text())
    assert meta["input"]["dynamic_batch"] and meta["input"]["dynamic_spatial"]
    assert meta["parity"]["max_abs_diff"] <= 1e-4 and meta["size_multiple"] == 32
    assert meta["generator"]["num_downs"] == 5 and isinstance(meta["onnx_opset"], int)


@pytest.mark.parametrize("backend", ["eager", "onnx", "pt2"])
def test_backends_agree_with_eager_on_other_sizes(bundle, backend):
    out, inf = bundle
    tr = load_translator(out, backend=backend)
    x = torch.rand(3, 3, 96, 64) * 2 - 1  # batch and size differ from the export example
    torch.testing.assert_close(tr.translate_batch(x), inf(x), atol=1e-4, rtol=0)


def test_kinds_in_kinds_out_and_padding(bundle):
    out, inf = bundle
    tr = load_translator(out)
    pil = tr(Image.new("RGB", (50, 37), (200, 10, 10)))
    assert isinstance(pil, Image.Image) and pil.size == (50, 37) and pil.mode == "L"
    arr = tr(np.zeros((37, 50, 4), np.uint8))  # RGBA -> RGB, odd size padded and cropped back
    assert isinstance(arr, np.ndarray) and arr.shape == (37, 50) and arr.dtype == np.uint8
    gray = tr(torch.zeros(1, 64, 64))  # 1 channel expanded to the net's 3
    assert gray.shape == (1, 64, 64)
    x = torch.rand(3, 64, 64) * 2 - 1
    torch.testing.assert_close(tr(x), inf(x[None])[0], atol=1e-5, rtol=0)
    assert len(tr([x, x])) == 2
    with pytest.raises(ValueError, match=r"expected 3 channels, got a tensor of shape \(2, 64, 64\)"):
        tr(torch.zeros(2, 64, 64))


def test_refuses_to_overwrite_and_keeps_old_bundle_on_failure(bundle, tmp_path, monkeypatch):
    out, inf = bundle
    net = build_generator("unet", 3, 1, ngf=4, num_downs=5)
    with pytest.raises(FileExistsError):
        export_bundle(inf, out, meta_for(net), torch.rand(1, 3, 64, 64), size_multiple=32)
    before = sorted(p.name for p in tmp_path.iterdir())
    import translate.export as ex

    monkeypatch.setattr(ex, "parity", lambda *a, **k: 0.5)  # as if onnxruntime disagreed
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_bundle(inf, tmp_path / "b2", meta_for(net), torch.rand(1, 3, 64, 64), size_multiple=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial bundle left
    with pytest.raises(ValueError, match="lacks"):
        export_bundle(inf, tmp_path / "b3", {"method": "x"}, torch.rand(1, 3, 64, 64))


def test_bad_bundles(tmp_path):
    with pytest.raises(FileNotFoundError, match="translator.json"):
        load_translator(tmp_path)
    (tmp_path / "translator.json").write_text("{oops")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_translator(tmp_path)


def test_inference_api_needs_no_training_stack(bundle):
    out, _ = bundle
    code = ("import sys, translate; t = translate.load_translator(sys.argv[1]); "
            "bad = [m for m in ('pytorch_lightning', 'lightning', 'omegaconf', 'albumentations') if m in sys.modules]; "
            "assert not bad, bad; print('ok')")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
