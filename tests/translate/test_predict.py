import numpy as np
import pytest
import torch
from PIL import Image

from nets import build_generator, generator_spec, inference_copy
from translate.export import export_bundle
from translate.inference import load_translator
from translate.predict import predict_paths


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    torch.manual_seed(0)
    net = build_generator("resnet", 3, 3, ngf=4, n_blocks=1, norm="instance")
    meta = {"method": "cyclegan", "input_nc": 3, "output_nc": 3, "value_range": [-1.0, 1.0], "size_multiple": 4,
            "direction": "AtoB", "generator": generator_spec(net)}
    out = tmp_path_factory.mktemp("b") / "bundle"
    export_bundle(inference_copy(net), out, meta, torch.rand(1, 3, 32, 32), size_multiple=4)
    return load_translator(out)


def make_folder(folder, names, size=(30, 20)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / n)


def test_folder_keeps_names_and_sizes(translator, tmp_path):
    make_folder(tmp_path / "in", ["a.png", "b.jpg", "c.png"])
    make_folder(tmp_path / "in", ["d.png"], size=(17, 9))
    written = predict_paths(translator, tmp_path / "in", tmp_path / "out", batch_size=2, progress=False)
    assert sorted(p.name for p in written) == ["a.png", "b.jpg", "c.png", "d.png"]
    assert Image.open(tmp_path / "out" / "d.png").size == (17, 9)
    single = predict_paths(translator, tmp_path / "in" / "a.png", tmp_path / "one", progress=False)
    assert [p.name for p in single] == ["a.png"]


def test_refuses_output_inside_input(translator, tmp_path):
    make_folder(tmp_path / "in", ["a.png"])
    for out in (tmp_path / "in", tmp_path / "in" / "sub"):
        with pytest.raises(ValueError, match="refusing to write into the input folder"):
            predict_paths(translator, tmp_path / "in", out, progress=False)
    with pytest.raises(ValueError, match="refusing"):
        predict_paths(translator, tmp_path / "in" / "a.png", tmp_path / "in", progress=False)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.png"]


def test_skips_corrupt_files(translator, tmp_path):
    make_folder(tmp_path / "in", ["a.png", "b.png"])
    data = (tmp_path / "in" / "b.png").read_bytes()
    (tmp_path / "in" / "b.png").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="b.png"):
        written = predict_paths(translator, tmp_path / "in", tmp_path / "out", progress=False)
    assert [p.name for p in written] == ["a.png"]
    with pytest.raises(FileNotFoundError, match="nothing"):
        predict_paths(translator, tmp_path / "nothing", tmp_path / "out2", progress=False)
