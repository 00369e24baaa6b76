"""Bundles: files, translator.json, dynamic dims (and the static fallback), parity, atomic writes."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from nets import build_generator, generator_spec, inference_copy
from translate.deploy.export import ExportError, export_bundle

FILES = ["model.onnx", "model.pt2", "translator.json", "weights.safetensors"]


class TinyNet(nn.Module):
    """A stand-in translator outside `nets`: one stride-2 level, so sizes must be even."""

    def __init__(self, input_nc=3, output_nc=3):
        super().__init__()
        self.down = nn.Conv2d(input_nc, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, output_nc, 4, stride=2, padding=1)

    def forward(self, x):
        return torch.tanh(self.up(torch.relu(self.down(x))))


class FixedSize(nn.Module):
    """Multiplies by an 8x8 map: the batch can be dynamic, height and width cannot."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, 64).view(1, 1, 8, 8))

    def forward(self, x):
        return x * self.gain


class DiffersWhenExported(nn.Module):
    """A net the exporter cannot reproduce: eager adds 0.5, the traced graph does not."""

    def forward(self, x):
        return x if torch.compiler.is_exporting() else x + 0.5


def meta_for(input_nc=3, output_nc=3, size_multiple=2, generator=None, **extra):
    return {"method": "test", "input_nc": input_nc, "output_nc": output_nc, "value_range": [-1.0, 1.0],
            "size_multiple": size_multiple, "direction": None, "generator": generator, **extra}


def unet_meta(net, stats):
    return meta_for(net.input_nc, net.output_nc, net.size_multiple, generator_spec(net), method="pix2pix",
                    direction="AtoB", norm_stats=stats)


def read_json(folder):
    return json.loads((folder / "translator.json").read_text())


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    """A tiny U-Net (5 levels: size multiple 32) exported from a one-block example."""
    torch.manual_seed(0)
    net = build_generator("unet", 3, 1, ngf=4, num_downs=5, norm="batch")
    inf = inference_copy(net, norm_stats="sample")
    out = tmp_path_factory.mktemp("unet") / "bundle"
    export_bundle(inf, out, unet_meta(net, "sample"), rand(1, 3, 32, 32), size_multiple=32)
    return out, inf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    net = TinyNet().eval()
    out = tmp_path_factory.mktemp("tiny") / "bundle"
    export_bundle(net, out, meta_for(), rand(2, 3, 8, 12), size_multiple=2)
    return out, net


def test_unet_bundle_files_and_metadata(unet):
    out, _ = unet
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    meta = read_json(out)
    assert meta["format"] == 2 and meta["method"] == "pix2pix" and meta["direction"] == "AtoB"
    assert meta["input_nc"] == 3 and meta["output_nc"] == 1 and meta["size_multiple"] == 32
    assert meta["norm_stats"] == "sample" and meta["generator"]["num_downs"] == 5
    inp, outp = meta["input"], meta["output"]
    assert inp["shape"] == ["N", 3, "H", "W"] and outp["shape"] == ["N", 1, "H", "W"]
    assert inp["channels"] == 3 and outp["channels"] == 1 and inp["value_range"] == [-1.0, 1.0]
    assert inp["dynamic"] == {"batch": True, "height": True, "width": True} and meta["dynamic_fallback"] is None
    assert inp["min"] == {"batch": 1, "height": 32, "width": 32}  # one block, although traced at two
    assert inp["max"]["height"] % 32 == 0 and inp["max"]["height"] >= 4096 and inp["example_shape"] == [1, 3, 32, 32]
    assert meta["torch_version"] == torch.__version__ and meta["onnxruntime_version"] == ort.__version__
    assert isinstance(meta["onnx_opset"], int) and meta["onnx_opset"] >= 18
    parity = meta["parity"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["pt2_max_abs_diff"] <= 1e-4 and parity["atol"] == 1e-4
    assert [1, 3, 32, 32] in parity["shapes"] and len(parity["shapes"]) == 2  # the example (= smallest), a larger
    assert sorted(meta["files"]["all"]) == FILES
    assert meta["graph_rewrites"] == {"thin_convolutions": 0}  # its output layer is transposed: nothing to rewrite


def _resnet(n_blocks=1):
    torch.manual_seed(0)
    net = build_generator("resnet", 3, 3, ngf=8, n_blocks=n_blocks, norm="instance")
    return net, meta_for(size_multiple=4, generator=generator_spec(net), method="cyclegan")


def test_the_thin_output_layer_is_rewritten_and_checked(tmp_path):
    net, meta = _resnet()
    out = export_bundle(inference_copy(net), tmp_path / "b", meta, rand(1, 3, 16, 16), size_multiple=4)
    meta = read_json(out)
    assert meta["graph_rewrites"] == {"thin_convolutions": 1}  # the 7x7 layer into 3 channels
    nodes = onnx.load(str(out / "model.onnx")).graph.node
    assert [n.op_type for n in nodes].count("DepthToSpace") == 1
    assert meta["parity"]["max_abs_diff"] <= 1e-4  # the rewritten graph is the one checked
    x = rand(2, 3, 20, 28, seed=4)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0],
                                   inference_copy(net)(x).numpy(), rtol=0, atol=1e-4)


def test_a_wrong_rewrite_fails_the_parity_check(tmp_path, monkeypatch):
    import translate.deploy.rewrites as rewrites

    net, meta = _resnet()
    monkeypatch.setattr(rewrites, "phase_stacked_weights", lambda w: np.ascontiguousarray(
        np.tile(np.pad(w, ((0, 0), (0, 0), (0, 1), (0, 1))), (4, 1, 1, 1))))  # every phase at tap offset (0, 0)
    with pytest.raises(ExportError, match="differ from eager"):
        export_bundle(inference_copy(net), tmp_path / "b", meta, rand(1, 3, 16, 16), size_multiple=4)
    assert not (tmp_path / "b").exists()


def test_onnx_graph_has_dynamic_dims(unet):
    out, _ = unet
    dims = onnx.load(str(out / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField("dim_param") for d in dims] == [True, False, True, True] and dims[1].dim_value == 3


@pytest.mark.parametrize("which", ["unet", "tiny"])
def test_onnx_and_pt2_reproduce_eager_at_other_sizes(which, request):
    out, net = request.getfixturevalue(which)
    x = rand(3, 3, 96, 64, seed=5)  # batch and size differ from the example's
    with torch.no_grad():
        ref = net(x)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - ref.numpy()).max() <= 1e-4
    program = torch.export.load(str(out / "model.pt2")).module()  # pt2 round trip
    torch.testing.assert_close(program(x), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(program(x[:1, :, :32, :32]), net(x[:1, :, :32, :32]), atol=1e-5, rtol=0)


def test_weights_rebuild_the_eager_net(unet):
    out, inf = unet
    spec = read_json(out)["generator"]
    net = inference_copy(build_generator(**spec), norm_stats="sample")
    net.load_state_dict(load_file(str(out / "weights.safetensors")), strict=True)
    x = rand(2, 3, 64, 32, seed=3)
    torch.testing.assert_close(net(x), inf(x), atol=0, rtol=0)


def test_tiny_bundle_without_generator(tiny):
    out, _ = tiny
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # a new folder's mode, not mkdtemp's private 0700
    meta = read_json(out)
    assert meta["generator"] is None and meta["input"]["min"] == {"batch": 1, "height": 2, "width": 2}
    assert [2, 3, 8, 12] in meta["parity"]["shapes"] and [1, 3, 2, 2] in meta["parity"]["shapes"]


def test_dims_the_exporter_cannot_free_stay_static_and_are_recorded(tmp_path):
    out = export_bundle(FixedSize().eval(), tmp_path / "b", meta_for(size_multiple=4), rand(2, 3, 8, 8),
                        size_multiple=4)
    meta = read_json(out)
    assert meta["input"]["dynamic"] == {"batch": True, "height": False, "width": False}
    assert meta["input"]["shape"] == ["N", 3, 8, 8] and meta["input"]["min"]["height"] == 8
    assert meta["dynamic_fallback"]["static"] == ["height", "width"] and meta["dynamic_fallback"]["reasons"]
    dims = onnx.load(str(out / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].HasField("dim_param") and [dims[2].dim_value, dims[3].dim_value] == [8, 8]
    assert meta["parity"]["max_abs_diff"] <= 1e-6


def test_parity_failure_raises_and_keeps_the_old_bundle(tiny, tmp_path):
    old, _ = tiny
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    with pytest.raises(ExportError, match=r"differ from eager PyTorch by 0.5 > atol"):
        export_bundle(DiffersWhenExported().eval(), old, meta_for(), rand(2, 3, 8, 8), size_multiple=2,
                      overwrite=True)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert sorted(p.name for p in old.parent.iterdir()) == ["bundle"]  # no temp folder left beside it
    with pytest.raises(ExportError):
        export_bundle(DiffersWhenExported().eval(), tmp_path / "new", meta_for(), rand(2, 3, 8, 8),
                      size_multiple=2)
    assert list(tmp_path.iterdir()) == []


def test_error_summaries_drop_terminal_colours():
    """The ONNX exporter colours its messages; the fallback reasons recorded in translator.json are plain text."""
    from translate.deploy.export import _first_line

    e = RuntimeError("Failed to convert. \x1b[96mThis is step 3/3\x1b[0m of exporting.\nsecond line\nthird")
    assert _first_line(e) == "Failed to convert. This is step 3/3 of exporting. second line"


def test_bundle_files_get_the_umask_permissions(tmp_path):
    """Every file of a bundle (safetensors writes its file privately, 0600) and the folder as any new file or
    folder under the user's umask (here 027: 0640 and 0750), so that a shared bundle is readable by the group."""
    old = os.umask(0o027)
    try:
        out = export_bundle(TinyNet().eval(), tmp_path / "b", meta_for(), rand(1, 3, 6, 4), size_multiple=2,
                            dynamic_batch=False, dynamic_spatial=False, check=False)
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {name: 0o640 for name in FILES}
    assert out.stat().st_mode & 0o777 == 0o750


def test_refuses_to_overwrite_unless_asked(tmp_path):
    dest = tmp_path / "b"
    dest.mkdir()
    (dest / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        export_bundle(TinyNet().eval(), dest, meta_for(), rand(2, 3, 8, 8), size_multiple=2)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        export_bundle(TinyNet().eval(), tmp_path / "file", meta_for(), rand(2, 3, 8, 8), size_multiple=2)
    # --overwrite replaces bundles only: not a folder of other files (a run directory, data, ...)
    with pytest.raises(FileExistsError, match=r"replaces a bundle folder only.*is not one \(it also holds keep.txt\)"):
        export_bundle(TinyNet().eval(), dest, meta_for(), rand(2, 3, 8, 8), size_multiple=2, overwrite=True)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    (dest / "keep.txt").unlink()
    static = dict(dynamic_batch=False, dynamic_spatial=False, check=False)
    export_bundle(TinyNet().eval(), dest, meta_for(), rand(1, 3, 6, 4), size_multiple=2, **static)
    (dest / "checkpoints").mkdir()  # a bundle with something else beside it is kept too
    with pytest.raises(FileExistsError, match=r"also holds checkpoints"):
        export_bundle(TinyNet().eval(), dest, meta_for(), rand(1, 3, 6, 4), size_multiple=2, overwrite=True, **static)
    (dest / "checkpoints").rmdir()
    out = export_bundle(TinyNet().eval(), dest, meta_for(), rand(1, 3, 6, 4), size_multiple=2, overwrite=True,
                        **static)
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "file"]
    meta = read_json(out)  # static on request: nothing to fall back from; unchecked: no parity
    assert meta["input"]["shape"] == [1, 3, 6, 4] and not any(meta["input"]["dynamic"].values())
    assert meta["dynamic_fallback"] is None and meta["parity"] is None


@pytest.mark.parametrize("change, message", [
    ({"method": None}, "'method' must be a string"),
    ({"output_nc": 0}, "'output_nc' must be a positive int"),
    ({"value_range": [1, -1]}, "'value_range' must be"),
    ({"generator": "unet"}, "'generator' must be"),
    ({"direction": 3}, "'direction'"),
    ({"size_multiple": 4}, "size_multiple=2 but meta"),
    ({"parity": 1}, "written by export_bundle"),
    ({"extra": object()}, "JSON-serialisable"),
])
def test_bad_metadata(change, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        export_bundle(TinyNet().eval(), tmp_path / "b", {**meta_for(), **change}, rand(2, 3, 8, 8), size_multiple=2)
    assert list(tmp_path.iterdir()) == []


def test_missing_metadata_bad_example_and_training_mode(tmp_path):
    meta = meta_for()
    del meta["direction"], meta["generator"]
    with pytest.raises(ValueError, match=r"lacks \['direction', 'generator'\]"):
        export_bundle(TinyNet().eval(), tmp_path / "b", meta, rand(2, 3, 8, 8), size_multiple=2)
    with pytest.raises(ValueError, match=r"expected an example batch \(N, 3, H, W\), got \(2, 1, 8, 8\)"):
        export_bundle(TinyNet().eval(), tmp_path / "b", meta_for(), rand(2, 1, 8, 8), size_multiple=2)
    with pytest.raises(ValueError, match=r"divisible by 2, got \(2, 3, 8, 7\)"):
        export_bundle(TinyNet().eval(), tmp_path / "b", meta_for(), rand(2, 3, 8, 7), size_multiple=2)
    with pytest.raises(ValueError, match="training mode"):
        export_bundle(TinyNet(), tmp_path / "b", meta_for(), rand(2, 3, 8, 8), size_multiple=2)
    assert list(tmp_path.iterdir()) == []
