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


SG3 = os.path.join(os.path.dirname(__file__), "..", "data", "sg3")


def test_stylegan3_transformed_renders_and_animations(tmp_path, capsys):
    """--translate / --rotate replace the input transform as gen_images.py does (the golden transformed image);
    --animate writes a GIF (and an MP4) moving from the identity to that transform."""
    import numpy as np
    import torch

    from priors import load_prior
    from priors.generate import z_for

    g = torch.load(os.path.join(SG3, "sg3t_tiny.pt"), weights_only=True)
    prior = str(tmp_path / "sg3_prior")
    assert main(["convert-prior", os.path.join(SG3, "sg3t_tiny_network.pkl"), prior]) == 0
    args = g["extra"]["transform_forward_args"]
    tx, ty = args["translate"]
    assert main(["generate", "--prior", prior, "--seeds", "1", "--translate", f"{tx},{ty}",
                 "--rotate", str(args["angle_deg"]), "--out", str(tmp_path / "moved.png")]) == 0
    assert main(["generate", "--prior", prior, "--seeds", "1", "--out", str(tmp_path / "still.png")]) == 0
    moved, still = (np.asarray(Image.open(tmp_path / n), dtype=np.float32) for n in ("moved.png", "still.png"))
    assert moved.shape == still.shape == (32, 32, 3) and np.abs(moved - still).mean() > 1.0
    G = load_prior(prior)  # what generate wrote is the prior under gen_images.py's transform
    G.set_transform(args["translate"], args["angle_deg"])
    torch.testing.assert_close(G.synthesis.input.transform, g["extra"]["transform"], atol=1e-6, rtol=0)
    with torch.no_grad():
        img = G(z_for([1], G.z_dim))[0]
    expected = ((img.clamp(-1, 1) + 1) / 2 * 255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(moved - expected).max() <= 1

    assert main(["generate", "--prior", prior, "--seeds", "0", "--rotate", "90", "--animate", "3",
                 "--out", str(tmp_path / "spin.gif")]) == 0
    gif = Image.open(tmp_path / "spin.gif")
    assert gif.n_frames == 3 and gif.size == (32, 32)  # a grid of one image is the image
    frames = []
    for k in range(3):
        gif.seek(k)
        frames.append(np.asarray(gif.convert("RGB"), dtype=np.float32))
    assert np.abs(frames[0] - frames[2]).mean() > 1.0
    assert main(["generate", "--prior", prior, "--seeds", "0", "--translate", "0.1,0", "--animate", "2",
                 "--out", str(tmp_path / "walk.mp4")]) == 0
    assert (tmp_path / "walk.mp4").stat().st_size > 0

    assert main(["generate", "--prior", os.path.join(DATA, "rosinality_tiny.pt"), "--rotate", "10",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "need a StyleGAN3 prior" in capsys.readouterr().err
    assert main(["generate", "--prior", prior, "--animate", "4", "--out", str(tmp_path / "x.gif")]) == 2
    assert "--animate needs the motion's end point" in capsys.readouterr().err
    assert main(["generate", "--prior", prior, "--translate", "1", "--out", str(tmp_path / "x.png")]) == 2
    assert "--translate: expected two numbers X,Y" in capsys.readouterr().err
