"""load_translator: every backend gives the same outputs; any image kind in, the same kind out; clear errors."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from nets import build_generator, generator_spec, inference_copy
from translate.deploy.export import export_bundle
from translate.deploy.inference import BundleError, Translator, cpu_plan, load_translator, predict_backend


class TinyNet(nn.Module):
    """A stand-in translator outside `nets` (no generator spec: only the onnx and pt2 backends)."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1)

    def forward(self, x):
        return torch.tanh(self.up(torch.relu(self.down(x))))


def meta_for(net=None, size_multiple=2, **extra):
    if net is None:
        return {"method": "test", "input_nc": 3, "output_nc": 3, "value_range": [-1.0, 1.0],
                "size_multiple": size_multiple, "direction": None, "generator": None, **extra}
    return {"method": "pix2pix", "input_nc": net.input_nc, "output_nc": net.output_nc, "value_range": [-1.0, 1.0],
            "size_multiple": net.size_multiple, "direction": "AtoB", "generator": generator_spec(net), **extra}


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def image(h=37, w=50, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    """A tiny RGB -> gray U-Net (size multiple 32), BatchNorm with per-sample statistics."""
    torch.manual_seed(0)
    net = build_generator("unet", 3, 1, ngf=4, num_downs=5, norm="batch")
    inf = inference_copy(net, norm_stats="sample")
    out = tmp_path_factory.mktemp("unet") / "bundle"
    export_bundle(inf, out, meta_for(net, norm_stats="sample"), rand(2, 3, 64, 32), size_multiple=32)
    return out, inf


@pytest.fixture(scope="module")
def translators(unet):
    return {b: load_translator(unet[0], backend=b) for b in ("eager", "onnx", "pt2")}


@pytest.fixture(scope="module")
def static(tmp_path_factory):
    """A stand-in net exported with batch 2 and 8 x 8 fixed."""
    torch.manual_seed(0)
    net = TinyNet().eval()
    out = tmp_path_factory.mktemp("static") / "bundle"
    export_bundle(net, out, meta_for(), rand(2, 3, 8, 8), dynamic_batch=False, dynamic_spatial=False,
                  size_multiple=2)
    return out, net


def padded_reference(net, x, multiple):
    """What a translator must give: reflection-pad to the multiple, run, crop back."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="reflect")
    with torch.no_grad():
        return net(xp)[..., :h, :w]


@pytest.mark.parametrize("backend", ["eager", "onnx", "pt2"])
def test_backends_agree_with_eager(translators, unet, backend):
    _, net = unet
    tr = translators[backend]
    assert tr.backend == backend
    x = rand(3, 3, 96, 64, seed=1)  # batch and size differ from the export example
    with torch.no_grad():
        torch.testing.assert_close(tr.translate_batch(x), net(x), atol=1e-4, rtol=0)
    odd = rand(2, 3, 37, 50, seed=2)  # padded to 64 x 64, cropped back
    y = tr.translate_batch(odd)
    assert y.shape == (2, 1, 37, 50)
    torch.testing.assert_close(y, padded_reference(net, odd, 32), atol=1e-4, rtol=0)


def test_every_backend_has_one_interface(translators, static):
    """Backends are classes of one interface: a name, whether they take any shape, the torch net where they have
    one; the translator reads nothing else off them."""
    from translate.deploy.inference import BACKEND_TYPES, BACKENDS, Backend

    assert BACKENDS == ("auto", "eager", "onnx", "pt2") and set(translators) == set(BACKEND_TYPES)
    x = rand(2, 3, 64, 32, seed=3)
    for name, tr in translators.items():
        run = tr._run
        assert isinstance(run, BACKEND_TYPES[name]) and isinstance(run, Backend) and run.name == tr.backend == name
        assert run.any_shape == (name == "eager") and (run.net is not None) == (name == "eager")
        y = run(x)
        assert y.shape == (2, 1, 64, 32) and y.dtype == torch.float32 and y.device == x.device
    # an exported graph keeps the shapes it was traced with; the eager net's come from the size multiple only
    assert load_translator(static[0])._fixed == {"batch": 2, "height": 8, "width": 8}
    assert translators["eager"]._fixed == {"batch": None, "height": None, "width": None}
    with pytest.raises(TypeError):
        Backend()  # an interface, not a backend


@pytest.mark.parametrize("workers", [1, 3])
def test_onnx_images_side_by_side_agree_with_eager(unet, workers):
    """predict's default on the CPU: onnxruntime, the images of a batch run side by side by `workers` threads."""
    folder, net = unet
    tr = load_translator(folder, backend="onnx", cpu_workers=workers)
    assert tr._run.workers == workers and f"{workers} x" in repr(tr._run)
    x = rand(5, 3, 64, 96, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(tr.translate_batch(x), net(x), atol=1e-4, rtol=0)


def test_predict_picks_onnx_on_the_cpu(unet, static):
    assert predict_backend(unet[0]) == "onnx"
    assert predict_backend(unet[0], variants=2) == "auto"
    assert predict_backend(static[0]) == "auto"  # traced for 8 x 8 only: the eager net (if any) takes any size
    assert cpu_plan(cores=2) == (2, 1) and cpu_plan(cores=16) == (4, 4) and cpu_plan(cores=2, workers=1) == (1, 2)
    with pytest.raises(ValueError, match="cpu_workers: expected an int >= 1, got 0"):
        cpu_plan(cores=2, workers=0)


def test_auto_backend_and_paths(unet, static, tmp_path):
    assert load_translator(unet[0]).backend == "eager"  # the bundle names its generator
    assert load_translator(unet[0] / "translator.json").backend == "eager"
    assert load_translator(static[0]).backend == "onnx"  # it does not
    with pytest.raises(BundleError, match="no 'generator'"):
        load_translator(static[0], backend="eager")
    with pytest.raises(ValueError, match=r"backend: expected one of \['auto', 'eager', 'onnx', 'pt2'\], got 'trt'"):
        load_translator(unet[0], backend="trt")
    assert "3 -> 3 channels" in repr(load_translator(static[0])) and "backend onnx" in repr(load_translator(static[0]))


def test_same_kind_out(translators):
    tr = translators["onnx"]
    a = image()
    out_arr = tr(a)
    assert isinstance(out_arr, np.ndarray) and out_arr.shape == (37, 50, 1) and out_arr.dtype == np.uint8
    out_pil = tr(Image.fromarray(a))
    assert isinstance(out_pil, Image.Image) and out_pil.mode == "L" and out_pil.size == (50, 37)
    assert np.array_equal(np.asarray(out_pil), out_arr[:, :, 0])
    out_float = tr(a.astype(np.float64) / 255.0)  # float arrays in [0, 1] give uint8 too
    assert out_float.dtype == np.uint8 and np.abs(out_float.astype(int) - out_arr).max() <= 1
    t = torch.from_numpy(a).permute(2, 0, 1)
    out_u8 = tr(t)
    assert out_u8.dtype == torch.uint8 and out_u8.shape == (1, 37, 50)
    assert np.array_equal(out_u8.permute(1, 2, 0).numpy(), out_arr)
    x = t.float() / 127.5 - 1
    out_t = tr(x)
    assert out_t.dtype == torch.float32 and out_t.shape == (1, 37, 50)
    assert tr(x.double()).dtype == torch.float64
    assert tr(torch.stack([x, x.flip(-1)])).shape == (2, 1, 37, 50)
    mixed = tr([Image.fromarray(a), a, x, image(40, 30)])
    assert [type(m) for m in mixed] == [Image.Image, np.ndarray, torch.Tensor, np.ndarray]
    assert np.array_equal(np.asarray(mixed[0]), out_arr[:, :, 0]) and mixed[3].shape == (40, 30, 1)
    torch.testing.assert_close(mixed[2], out_t, atol=1e-5, rtol=0)


def test_list_calls_are_batched_by_size(translators, monkeypatch):
    tr = translators["eager"]
    seen = []
    run = tr.translate_batch
    monkeypatch.setattr(tr, "translate_batch", lambda x: seen.append(tuple(x.shape)) or run(x))
    monkeypatch.setattr(tr, "batch_size", 2)
    tr([image(seed=i) for i in range(3)] + [image(20, 20)])
    assert sorted(seen) == [(1, 3, 20, 20), (1, 3, 37, 50), (2, 3, 37, 50)]


def test_channel_conversions(translators):
    tr = translators["eager"]
    gray = image(c=1)[:, :, 0]
    rgb_of_gray = np.repeat(gray[:, :, None], 3, axis=2)
    assert np.array_equal(np.asarray(tr(Image.fromarray(gray))), tr(rgb_of_gray)[:, :, 0])  # gray -> RGB
    assert np.array_equal(tr(gray), tr(rgb_of_gray))
    a = image()
    opaque = np.concatenate([a, np.full((37, 50, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(tr(opaque), tr(a))  # alpha dropped when opaque
    half = np.concatenate([a, np.full((37, 50, 1), 128, np.uint8)], axis=2)
    on_white = np.asarray(Image.alpha_composite(Image.new("RGBA", (50, 37), "white"),
                                                Image.fromarray(half)).convert("RGB"))
    assert np.array_equal(np.asarray(tr(Image.fromarray(half))), tr(on_white)[:, :, 0])  # as files are
    t = torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1
    g = t[:1]
    torch.testing.assert_close(tr(g), tr(g.expand(3, -1, -1)), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"expected an RGB image \(3 channels.*got a tensor of shape \(5, 37, 50\)"):
        tr(torch.zeros(5, 37, 50))
    with pytest.raises(ValueError, match=r"expected an image array \(H, W\) or \(H, W, C\), got shape \(2, 3, 4, 5\)"):
        tr(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"float image array in \[0, 1\], got values in \[0, 255\]"):
        tr(a.astype(np.float32))
    with pytest.raises(ValueError, match=r"input range \[-1, 1\] \(or uint8\), got values in \[0, 255\]"):
        tr(torch.from_numpy(a).permute(2, 0, 1).float())
    with pytest.raises(TypeError, match="got str"):
        tr("photo.png")
    with pytest.raises(ValueError, match=r"expected a batch \(N, 3, H, W\), got \(1, 1, 8, 8\)"):
        tr.translate_batch(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="got torch.uint8"):
        tr.translate_batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("backend", ["onnx", "pt2"])
def test_static_bundle_batches_and_pads_to_its_fixed_shape(static, backend):
    out, net = static
    tr = load_translator(out, backend=backend)
    x = rand(3, 3, 8, 8, seed=4)  # 3 images through a batch-2 graph
    with torch.no_grad():
        torch.testing.assert_close(tr.translate_batch(x), net(x), atol=1e-4, rtol=0)
        small = rand(1, 3, 6, 7, seed=5)  # padded up to 8 x 8
        ref = net(F.pad(small, (0, 1, 0, 2), mode="reflect"))[..., :6, :7]
    torch.testing.assert_close(tr.translate_batch(small), ref, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="fixed height of 8; got 10"):
        tr.translate_batch(rand(1, 3, 10, 8))


def test_bad_bundles(unet, tmp_path):
    with pytest.raises(FileNotFoundError, match="bundle not found"):
        load_translator(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="translator.json not found"):
        load_translator(tmp_path)
    meta_path = tmp_path / "translator.json"
    meta_path.write_text("{oops")
    with pytest.raises(BundleError, match="translator.json: not valid JSON"):
        load_translator(tmp_path)
    meta_path.write_text("[1, 2]")
    with pytest.raises(BundleError, match="expected a JSON object, got list"):
        load_translator(tmp_path)
    good = json.loads((unet[0] / "translator.json").read_text())
    for change, message in [({"format": 99}, "bundle format 99"), ({"input_nc": "3"}, "'input_nc' must be"),
                            ({"value_range": [1, 1]}, "'value_range' must be")]:
        meta_path.write_text(json.dumps({**good, **change}))
        with pytest.raises(BundleError, match=message):
            load_translator(tmp_path)
    meta_path.write_text(json.dumps({k: v for k, v in good.items() if k != "size_multiple"}))
    with pytest.raises(BundleError, match="missing key 'size_multiple'"):
        load_translator(tmp_path)
    meta_path.write_text(json.dumps(good))  # metadata alone: each backend names the file it lacks
    for backend, name in [("onnx", "model.onnx"), ("pt2", "model.pt2"), ("eager", "weights.safetensors")]:
        with pytest.raises(FileNotFoundError, match=f"bundle file missing: .*{name}"):
            load_translator(tmp_path, backend=backend)
    shutil.copy(unet[0] / "weights.safetensors", tmp_path)
    meta_path.write_text(json.dumps({**good, "generator": {**good["generator"], "ngf": 8}}))
    with pytest.raises(BundleError, match="does not fit the generator"):
        load_translator(tmp_path, backend="eager")


def test_inference_api_needs_no_training_stack(unet):
    code = ("import sys, numpy as np, translate; t = translate.load_translator(sys.argv[1]); "
            "y = t(np.zeros((20, 30, 3), np.uint8)); assert y.shape == (20, 30, 1), y.shape; "
            "bad = [m for m in ('pytorch_lightning', 'lightning', 'omegaconf', 'albumentations') if m in sys.modules]; "
            "assert not bad, bad; print('ok', type(t).__name__)")
    r = subprocess.run([sys.executable, "-c", code, str(unet[0])], capture_output=True, text=True)
    assert r.returncode == 0 and "ok Translator" in r.stdout, r.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["eager", "pt2"])
def test_cuda_matches_cpu(unet, translators, backend):
    tr = load_translator(unet[0], backend=backend, device="cuda")
    x = rand(2, 3, 64, 96, seed=6)
    y = tr.translate_batch(x.cuda())
    assert y.is_cuda
    torch.testing.assert_close(y.cpu(), translators[backend].translate_batch(x), atol=1e-4, rtol=0)
    assert isinstance(tr, Translator) and tr(image()).shape == (37, 50, 1)


def test_broken_bundle_files_checkpoints_and_devices_are_named(unet, tmp_path):
    for name in ("weights.safetensors", "model.onnx", "model.pt2", "translator.json"):
        shutil.copy(unet[0] / name, tmp_path)
    for name, backend in (("weights.safetensors", "eager"), ("model.onnx", "onnx"), ("model.pt2", "pt2")):
        good = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(good[:100])  # truncated
        with pytest.raises(BundleError, match=rf"cannot load the {backend} model of this bundle.*export it again"):
            load_translator(tmp_path, backend=backend)
        (tmp_path / name).write_bytes(good)
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"\x80")
    with pytest.raises(BundleError, match="expected a bundle folder.*cli.py export --ckpt"):
        load_translator(ckpt)
    with pytest.raises(ValueError, match="not a torch device: 'toaster'"):
        load_translator(tmp_path, device="toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            load_translator(tmp_path, device="cuda")
