import os

import pytest
from PIL import Image

from priors.generate import parse_seeds
from translate.cli import main

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "sg2")


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="backwards"):
        parse_seeds("5-2")


def test_convert_then_generate_grids(tmp_path, capsys):
    assert main(["convert-prior", os.path.join(DATA, "nvlabs_tiny_network.pkl"), str(tmp_path / "prior")]) == 0
    assert main(["generate", "--prior", str(tmp_path / "prior"), "--seeds", "0-3", "--trunc", "0.7",
                 "--out", str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)
    assert main(["generate", "--prior", os.path.join(DATA, "rosinality_tiny.pt"), "--seeds", "0-1",
                 "--mix-seeds", "10-12", "--mix-layers", "fine", "--out", str(tmp_path / "mix.png")]) == 0
    assert Image.open(tmp_path / "mix.png").size == (4 * 32 + 5 * 2, 2 * 32 + 3 * 2)
    assert main(["generate", "--prior", str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert "missing" in capsys.readouterr().err


def test_generate_to_a_folder_one_image_per_seed_in_batches(tmp_path, monkeypatch, capsys):
    """A folder --out gets seed0042.png per seed (NVIDIA's names), rendered a few at a time; the images equal the
    grid's tiles. Wrong --out kinds and oversized grids are refused before anything renders."""
    import numpy as np

    import priors.generate as gen
    from priors.generate import generate

    monkeypatch.setattr(gen, "BATCH", 2)
    prior = os.path.join(DATA, "rosinality_tiny.pt")
    out = generate(prior, [3, 4, 5], tmp_path / "samples")
    assert sorted(p.name for p in out.iterdir()) == ["seed0003.png", "seed0004.png", "seed0005.png"]
    grid = np.array(Image.open(generate(prior, [4], tmp_path / "one.png")))
    assert np.abs(np.array(Image.open(out / "seed0004.png")).astype(int) - grid.astype(int)).max() <= 1
    assert main(["generate", "--prior", prior, "--seeds", "0-1", "--out", str(tmp_path / "more")]) == 0
    assert "2 images written to" in capsys.readouterr().out
    calls = []
    monkeypatch.setattr(gen, "load_prior", lambda p: calls.append(p))
    with pytest.raises(ValueError, match=r"a grid of 1025 images is more than 1024; write one image per seed"):
        generate(prior, list(range(1025)), tmp_path / "big.png")
    with pytest.raises(ValueError, match=r"expected an image file for the grid \(.png, .jpg"):
        generate(prior, [0], tmp_path / "grid.safetensors")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"afile is a file"):
        generate(prior, [0], tmp_path / "afile" / "x.png")
    with pytest.raises(NotADirectoryError, match=r"expected a folder for one image per seed, got a file"):
        generate(prior, [0], tmp_path / "afile")
    assert calls == []  # nothing was loaded or rendered
