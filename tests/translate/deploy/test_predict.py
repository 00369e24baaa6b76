"""predict_paths: names kept, batches of one size, inputs never touched, unreadable files skipped."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from nets import build_generator, generator_spec, inference_copy
from translate.deploy.export import export_bundle
from translate.deploy.inference import load_translator
from translate.deploy.predict import predict_paths


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    torch.manual_seed(0)
    net = build_generator("resnet", 3, 3, ngf=4, n_blocks=1, norm="instance")
    meta = {"method": "cyclegan", "input_nc": 3, "output_nc": 3, "value_range": [-1.0, 1.0], "size_multiple": 4,
            "direction": "AtoB", "generator": generator_spec(net)}
    out = tmp_path_factory.mktemp("b") / "bundle"
    export_bundle(inference_copy(net), out, meta, torch.rand(1, 3, 32, 32) * 2 - 1, size_multiple=4)
    return load_translator(out)


def make_images(folder, names, size=(30, 20), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / n)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_folder_keeps_names_sizes_and_values(translator, tmp_path):
    src = tmp_path / "in"
    make_images(src, ["a.png", "b.jpg", "c.png"])
    make_images(src, ["d.png"], size=(17, 9), seed=1)
    (src / "notes.txt").write_text("not an image")
    before = snapshot(src)
    written = predict_paths(translator, src, tmp_path / "out", batch_size=2, progress=False)
    assert written == [tmp_path / "out" / n for n in ("a.png", "b.jpg", "c.png", "d.png")]
    assert Image.open(tmp_path / "out" / "d.png").size == (17, 9)
    assert Image.open(tmp_path / "out" / "b.jpg").format == "JPEG"
    expected = np.asarray(translator(Image.open(src / "d.png")))
    assert np.abs(np.asarray(Image.open(tmp_path / "out" / "d.png"), int) - expected).max() <= 1
    assert snapshot(src) == before
    with pytest.warns(UserWarning, match=r"4 existing file\(s\) will be replaced"):  # a rerun says so
        predict_paths(translator, src, tmp_path / "out", batch_size=2, progress=False)


def test_batches_hold_one_size_and_at_most_batch_size(translator, tmp_path, monkeypatch):
    make_images(tmp_path / "in", ["a.png", "b.png", "c.png"])
    make_images(tmp_path / "in", ["d.png", "e.png"], size=(12, 16), seed=1)
    seen = []
    run = translator.translate_batch
    monkeypatch.setattr(translator, "translate_batch", lambda x: seen.append(tuple(x.shape)) or run(x))
    predict_paths(translator, tmp_path / "in", tmp_path / "out", batch_size=2, progress=True)  # rich bar too
    assert sorted(seen) == [(1, 3, 20, 30), (2, 3, 16, 12), (2, 3, 20, 30)]


def test_single_file(translator, tmp_path):
    make_images(tmp_path / "in", ["a.png", "b.png"])
    assert predict_paths(translator, tmp_path / "in" / "a.png", tmp_path / "one", progress=False) == [
        tmp_path / "one" / "a.png"]
    # a folder beside or below a single input file is fine; its own folder is not
    assert predict_paths(translator, tmp_path / "in" / "a.png", tmp_path / "in" / "sub", progress=False)
    with pytest.raises(ValueError, match="refusing to overwrite the input file .*a.png"):
        predict_paths(translator, tmp_path / "in" / "a.png", tmp_path / "in", progress=False)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"expected an image file \(.png.*got .*notes.txt"):
        predict_paths(translator, tmp_path / "notes.txt", tmp_path / "out", progress=False)


def test_refuses_to_write_into_the_input_folder(translator, tmp_path):
    src = tmp_path / "in"
    make_images(src, ["a.png"])
    before = snapshot(src)
    for out in (src, src / "sub", src / "sub" / ".." / "sub2"):
        with pytest.raises(ValueError, match="refusing to write into the input folder"):
            predict_paths(translator, src, out, progress=False)
    assert snapshot(src) == before  # nothing written, no folder made
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="output must be a folder, got an existing file"):
        predict_paths(translator, src, tmp_path / "file.png", progress=False)
    with pytest.raises(ValueError, match=r"output must be a folder, got an existing file: .*file.png$"):
        predict_paths(translator, src, tmp_path / "file.png" / "sub", progress=False)
    with pytest.raises(FileNotFoundError, match="input not found: .*nothing"):
        predict_paths(translator, tmp_path / "nothing", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got 0"):
        predict_paths(translator, src, tmp_path / "out", batch_size=0, progress=False)


def test_skips_unreadable_files(translator, tmp_path, capsys):
    src = tmp_path / "in"
    make_images(src, ["a.png", "b.png", "c.png"])
    data = (src / "b.png").read_bytes()
    (src / "b.png").write_bytes(data[: len(data) // 2])  # header fine, pixels cut off
    (src / "c.png").write_bytes(b"not a png at all")  # no header
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported on stderr, not as Python warnings (which print a source line)
        written = predict_paths(translator, src, tmp_path / "out", progress=False)
    assert written == [tmp_path / "out" / "a.png"]
    err = capsys.readouterr().err.splitlines()
    # one line per skipped file, then their count
    assert len(err) == 3, err
    assert err[0].startswith(f"warning: skipping {src / 'c.png'}: unreadable image (")  # no header
    assert err[1].startswith(f"warning: skipping {src / 'b.png'}: unreadable image (")  # pixels cut off
    assert err[2] == f"skipped 2 unreadable image(s): {src / 'c.png'}, {src / 'b.png'}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_outputs_that_would_overwrite_each_other_are_refused(tmp_path):
    """pSp variants are written as <stem>_mix<k>: an input already named so would be overwritten."""
    from translate.deploy.predict import _check_output

    files = [tmp_path / "in" / "face.png", tmp_path / "in" / "face_mix1.png"]
    _check_output(tmp_path / "out", files, tmp_path / "in", variants=1)  # face_mix0 is free
    with pytest.raises(ValueError, match=r"outputs of face.png and face_mix1.png .*face_mix1.png; rename"):
        _check_output(tmp_path / "out", files, tmp_path / "in", variants=2)


def test_invert_refuses_two_inputs_with_one_stem(tmp_path):
    from translate.tools.invert import invert_folder

    for name in ("a.png", "a.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    with pytest.raises(ValueError, match=r"a.jpg and a.png would both be written as a.safetensors"):
        invert_folder(None, tmp_path, tmp_path / "codes")
    assert not (tmp_path / "codes").exists()


def test_side_by_side_images(translator, tmp_path):
    """pSp's --couple_outputs: OUT/side_by_side/<name> is the input | the output, at the output's size."""
    src, out = tmp_path / "in", tmp_path / "out"
    make_images(src, ["a.png", "b.jpg"])
    Image.open(src / "a.png").convert("L").save(src / "gray.png")
    written = predict_paths(translator, src, out, progress=False, side_by_side=True)
    assert [p.name for p in written] == ["a.png", "b.jpg", "gray.png"]
    assert sorted(p.name for p in (out / "side_by_side").iterdir()) == ["a.png", "b.jpg", "gray.png"]
    pair = np.array(Image.open(out / "side_by_side" / "a.png"))
    assert pair.shape == (20, 60, 3)
    assert np.array_equal(pair[:, :30], np.array(Image.open(src / "a.png")))
    assert np.array_equal(pair[:, 30:], np.array(Image.open(out / "a.png")))
    gray = np.array(Image.open(out / "side_by_side" / "gray.png"))
    assert np.array_equal(gray[:, :30], np.repeat(np.array(Image.open(src / "gray.png"))[:, :, None], 3, axis=2))
    # predict writes nothing into its input: not even when the input is a previous run's side_by_side folder
    before = snapshot(out / "side_by_side")
    with pytest.raises(ValueError, match="refusing to write into the input folder: side-by-side images go to"):
        predict_paths(translator, out / "side_by_side", out, progress=False, side_by_side=True)
    assert snapshot(out / "side_by_side") == before


def test_each_input_is_decoded_once_with_side_by_side_images(translator, tmp_path, monkeypatch):
    """The side-by-side image shows the input decoded for the translation; the file is not decoded again."""
    from PIL import ImageFile

    src = tmp_path / "in"
    make_images(src, ["a.png", "b.png", "c.png"])
    make_images(src, ["d.png"], size=(12, 16), seed=1)
    decoded = []
    load = ImageFile.ImageFile.load

    def counting_load(img):
        if img.tile:  # pixels still to decode (a decoded image's tile list is empty)
            decoded.append(img.filename)
        return load(img)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    predict_paths(translator, src, tmp_path / "out", batch_size=2, progress=False, side_by_side=True)
    assert sorted(decoded) == [str(src / n) for n in ("a.png", "b.png", "c.png", "d.png")]


def test_side_by_side_enlarges_small_inputs_pixel_for_pixel():
    from datamodules.io import label_palette
    from translate.deploy.predict import side_by_side_image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    outputs = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), rng.integers(0, 255, (32, 32, 1), dtype=np.uint8)]
    img = side_by_side_image(small, outputs)
    assert img.shape == (32, 96, 3)
    assert np.array_equal(img[:, :32], np.kron(small, np.ones((4, 4, 1), np.uint8)))  # nearest: the input's pixels
    assert np.array_equal(img[:, 32:64], outputs[0]) and np.array_equal(img[:, 64:], np.repeat(outputs[1], 3, 2))
    labels = np.array([[0, 1], [2, 3]], np.uint8)[:, :, None]  # class indices, as read_label_map gives them
    img = side_by_side_image(labels, outputs[:1], label_nc=4)
    assert np.array_equal(img[:16, :16], np.broadcast_to(label_palette(4)[0], (16, 16, 3)))
    assert np.array_equal(img[16:, 16:32], np.broadcast_to(label_palette(4)[3], (16, 16, 3)))
    big = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    reduced = side_by_side_image(big, outputs[:1])[:, :32].astype(int)
    assert np.abs(reduced - big.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))).mean() < 25  # a reduction, not a crop


def test_variants_of_a_non_psp_bundle_fail_before_anything_is_written(translator, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_images(src, ["a.png"])
    with pytest.raises(ValueError, match="style-mixed variants need a pSp bundle; this one is cyclegan"):
        predict_paths(translator, src, out, progress=False, variants=2)
    with pytest.raises(ValueError, match=r"choose how variants are mixed: give the number of variants \(--variants"):
        predict_paths(translator, src, out, progress=False, latent_mask=[4, 5])
    with pytest.raises(ValueError, match="give the number of variants"):
        predict_paths(translator, src, out, progress=False, mix_alpha=0.5)
    assert not out.exists()


def test_skip_existing_finishes_an_interrupted_run(translator, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    make_images(src, ["a.png", "b.png", "c.png"])
    predict_paths(translator, src / "a.png", out, progress=False)
    (out / "b.png").write_bytes(b"")  # not a translation of b: an unrelated empty file, still taken as done
    first = (out / "a.png").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "will be replaced" warning for outputs that are kept
        written = predict_paths(translator, src, out, progress=False, skip_existing=True)
    assert written == [out / "c.png"] and written.already == 2
    assert "2 of 3 images already translated" in capsys.readouterr().out
    assert (out / "a.png").read_bytes() == first and (out / "b.png").read_bytes() == b""
    again = predict_paths(translator, src, out, progress=False, skip_existing=True, side_by_side=True)
    assert again == [out / n for n in ("a.png", "b.png", "c.png")]  # their side-by-side images were missing
    assert not list(out.glob(".*.tmp"))  # images are written through temporary files, none left
    # an input is never taken as its own output
    with pytest.raises(ValueError, match="refusing to write into the input folder"):
        predict_paths(translator, src, src, progress=False, skip_existing=True)
