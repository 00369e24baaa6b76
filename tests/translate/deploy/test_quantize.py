"""quantize_bundle: an int8 bundle calibrated on images, its error against the fp32 bundle measured and stored."""
import json
import math

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from nets import build_generator, generator_spec, inference_copy
from translate.cli import main
from translate.deploy.export import export_bundle
from translate.deploy.inference import load_translator, predict_backend
from translate.deploy.quantize import INT8_FILE


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    net = build_generator("resnet", 3, 3, ngf=4, n_blocks=1, norm="instance")
    meta = {"method": "cyclegan", "input_nc": 3, "output_nc": 3, "value_range": [-1.0, 1.0], "size_multiple": 4,
            "direction": "AtoB", "generator": generator_spec(net)}
    out = tmp_path_factory.mktemp("q") / "bundle"
    export_bundle(inference_copy(net), out, meta, torch.rand(1, 3, 32, 32) * 2 - 1, size_multiple=4)
    images = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(4):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((32, 32), Image.BICUBIC).save(images / f"i{i}.png")
    return out, images


def test_int8_bundle_states_its_error(bundle, tmp_path, capsys):
    fp32_dir, images = bundle
    out = tmp_path / "int8"
    assert main(["quantize", "--model", str(fp32_dir), "--calibration", str(images), "--out", str(out)]) == 0
    assert "PSNR against the fp32 bundle" in capsys.readouterr().out
    meta = json.loads((out / "translator.json").read_text())
    q = meta["quantization"]
    assert meta["files"]["onnx"] == INT8_FILE and INT8_FILE in meta["files"]["all"]
    assert (q["calibration_images"], q["held_out_images"]) == (3, 1)
    assert q["negligible"] == (min(q["calibration_psnr_db"], q["held_out_psnr_db"]) >= 45)
    ops = [n.op_type for n in onnx.load(str(out / INT8_FILE)).graph.node]
    # the ResNet's two up layers as phase convolutions, quantised; its 7x7 layers into 4 (ngf) and 3 channels were
    # rewritten by the export, and stay fp32 as the layers next to the image and the output; the reflection pads of
    # its residual block pad uint8
    assert q["graph_rewrites"] == {"transposed_convolutions": 2, "thin_convolutions": 0, "quantized_before_padding": 2}
    assert q["fp32_convolutions"] == 2 and ops.count("Conv") == 2 and "ConvTranspose" not in ops
    assert ops.count("QLinearConv") == 2 + 2 * 1 + 4 * 2  # down layers, residual block, up layers' phases
    assert ops.count("DepthToSpace") == 2 + 2 and ops.count("Pad") == 4
    made = {o: n.op_type for n in onnx.load(str(out / INT8_FILE)).graph.node for o in n.output}
    padded = [made.get(n.input[0], "image") for n in onnx.load(str(out / INT8_FILE)).graph.node if n.op_type == "Pad"]
    assert padded == ["image", "QuantizeLinear", "QuantizeLinear", "Relu"]
    assert predict_backend(out) == "onnx"  # predict on the CPU runs the int8 graph
    int8, fp32 = load_translator(out, backend="onnx"), load_translator(fp32_dir, backend="onnx")
    x = torch.from_numpy(np.array(Image.open(images / "i3.png"))).permute(2, 0, 1)[None].float() / 127.5 - 1
    a, b = ((t.translate_batch(x) + 1) / 2 for t in (fp32, int8))
    psnr = 10 * math.log10(1 / float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean()))
    assert psnr == pytest.approx(q["held_out_psnr_db"], abs=0.02)  # the stored figure is the held-out image's
    assert 15 < psnr < 99  # int8, not the fp32 graph again, and close to it


def test_quantize_refuses_too_few_images(bundle, tmp_path, capsys):
    fp32_dir, images = bundle
    assert main(["quantize", "--model", str(fp32_dir), "--calibration", str(images / "i0.png"), "--out",
                 str(tmp_path / "q")]) == 2
    assert "calibration: expected at least 2 images" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_the_convolutions_next_to_the_image_and_the_output_are_found(tmp_path):
    import io

    from translate.deploy.rewrites import edge_convolutions, rewrite_transposed_convolutions

    torch.manual_seed(0)
    net = inference_copy(build_generator("unet", 3, 3, ngf=4, num_downs=5, norm="batch"), norm_stats="sample")
    buf = io.BytesIO()
    torch.onnx.export(net, torch.rand(1, 3, 32, 32), buf, input_names=["x"], dynamo=False, opset_version=17)
    model = onnx.load_from_string(buf.getvalue())
    rewrite_transposed_convolutions(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 5 + 4 * 5  # five down layers, five up layers of four phases
    edges = edge_convolutions(model)
    # the first down layer, and the last up layer's four phases (the skip connections reach no output directly)
    assert edges == sorted([convs[0].name] + [n.name for n in convs[-4:]])
