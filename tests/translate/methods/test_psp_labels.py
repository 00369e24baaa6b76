"""Segmentation-to-face end to end: pSp trained on one-hot label maps, exported, and `predict` on a folder of label
maps (class indices read as such, resized nearest, one-hot as in training)."""
import numpy as np
import pytest
import torch
from PIL import Image

from translate import cli
from translate.train import runner
from translate.deploy.inference import load_translator

LABEL_NC = 4


def label_map(size, i):
    labels = np.zeros((size, size), np.uint8)
    labels[size // 4: 3 * size // 4, size // 3:] = 1 + i % (LABEL_NC - 1)
    labels[:2] = LABEL_NC - 1
    return labels


def write_seg_pairs(root, n=4, size=32):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split / "A").mkdir(parents=True)
        (root / split / "B").mkdir(parents=True)
        for i in range(n):
            img = Image.fromarray(label_map(size, i), mode="L").convert("P")
            img.putpalette(list(rng.integers(0, 255, 768, dtype=np.uint8)))  # colours must not matter
            img.save(root / split / "A" / f"{i:03d}.png")
            face = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(face).save(root / split / "B" / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def seg_bundle(prior, tmp_path_factory, tiny_psp_config):
    tmp = tmp_path_factory.mktemp("seg")
    data = write_seg_pairs(tmp / "data")
    cfg = tiny_psp_config(prior, tmp / "run", "model.lpips_lambda=0", "model.id_lambda=0", "data.kind=paired",
                          f"data.root={data}", f"data.label_nc={LABEL_NC}", "data.flip=false", "data.batch_size=2",
                          "trainer.max_steps=1")
    runner.fit(cfg)
    bundle = tmp / "bundle"
    assert cli.main(["export", "--ckpt", str(tmp / "run" / "checkpoints" / "last.ckpt"), "--out", str(bundle)]) == 0
    return bundle, data


def test_predict_reads_label_maps_as_one_hot_classes(seg_bundle, tmp_path):
    bundle, data = seg_bundle
    t = load_translator(bundle)
    assert t.label_nc == LABEL_NC == t.input_nc
    out = tmp_path / "out"
    assert cli.main(["predict", "--model", str(bundle), "--input", str(data / "val" / "A"), "--output", str(out),
                     "--side-by-side"]) == 0
    written = sorted(p for p in out.iterdir() if p.is_file())
    assert [p.name for p in written] == [f"{i:03d}.png" for i in range(4)]
    # the file's output is the net's output for the one-hot map of its indices (not of its palette colours)
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(label_map(32, 1)).long(), LABEL_NC).permute(2, 0, 1)
    expected = t.to_uint8(t.translate_batch(one_hot[None].float())[0])
    got = np.array(Image.open(out / "001.png"))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    # side by side, the map is shown in the VOC colours of its classes (not its own palette), then the output
    from datamodules.io import label_palette

    coupled = np.array(Image.open(out / "side_by_side" / "001.png"))
    assert np.array_equal(coupled[:, :32], label_palette(LABEL_NC)[label_map(32, 1)])
    assert np.array_equal(coupled[:, 32:], got)


def test_label_maps_resize_nearest_and_bad_maps_are_skipped(seg_bundle, tmp_path, capsys):
    bundle, _ = seg_bundle
    t = load_translator(bundle)
    big = np.kron(label_map(32, 2), np.ones((3, 3), np.uint8))  # 96 px: resized to the encoder's 32
    x = t.from_label_map(big)
    assert x.shape == (LABEL_NC, 32, 32)
    assert set(x.unique().tolist()) == {0.0, 1.0} and torch.equal(x.sum(0), torch.ones(32, 32))  # one class each
    assert torch.equal(x.argmax(0), torch.from_numpy(label_map(32, 2)).long())
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 4\)"):
        t.from_label_map(np.full((32, 32), 7, np.uint8))

    folder = tmp_path / "maps"
    folder.mkdir()
    Image.fromarray(label_map(32, 0), mode="L").save(folder / "good.png")
    Image.fromarray(np.full((32, 32), 9, np.uint8), mode="L").save(folder / "wrong_classes.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "rgb.png")
    assert cli.main(["predict", "--model", str(bundle), "--input", str(folder), "--output",
                     str(tmp_path / "o")]) == 0
    skips = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: skipping")]
    assert sorted(line.split(": ")[1].split("/")[-1] for line in skips) == ["rgb.png", "wrong_classes.png"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["good.png"]


def test_validate_saves_label_maps_in_class_colours(seg_bundle, tmp_path):
    """`validate --save-images`: a segmentation model's inputs are written in the VOC colours of their classes."""
    from datamodules.io import label_palette

    bundle, data = seg_bundle
    ckpt = bundle.parent / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "results"
    runner.evaluate("validate", ckpt, save_images=out)
    for i in range(4):
        shown = np.array(Image.open(out / "input" / f"{i:03d}.png"))
        assert np.array_equal(shown, label_palette(LABEL_NC)[label_map(32, i)]), i
        target = np.array(Image.open(out / "target" / f"{i:03d}.png"))
        assert np.array_equal(target, np.array(Image.open(data / "val" / "B" / f"{i:03d}.png")))
        assert np.array(Image.open(out / "output" / f"{i:03d}.png")).shape == (32, 32, 3)
