"""`translate edit`: strength 0 reproduces the reconstruction, edits move only the chosen layers, the files and
strip are written per image, codes can be edited without images, and a direction made for another prior fails
clearly (before anything is written)."""
import numpy as np
import pytest
import torch

from nets.encoders import build_encoder
from nets.psp import PSPNet
from priors.loaders import load_prior
from translate import cli
from translate.tools import directions as dirs
from translate.tools import invert
from translate.tools.edit import edit_folder

ENC = dict(output_size=32, input_size=32, channels=[4, 8, 8, 16], w_dim=16)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_net(prior):
    torch.manual_seed(0)
    G = load_prior(prior)
    net = PSPNet(build_encoder("GradualStyleEncoder", input_nc=3, **ENC), G, G.mapping.w_avg, noise_mode="const")
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    from datamodules.toyfaces import write_toyfaces

    return write_toyfaces(tmp_path_factory.mktemp("faces"), n=2, size=32, split="val") / "images"


@pytest.fixture(scope="module")
def direction(prior, tmp_path_factory):
    return dirs.make_sefa(load_prior(prior), [0, 1, 2], 1, tmp_path_factory.mktemp("dirs"))[0]


def read(path):
    from PIL import Image

    return np.asarray(Image.open(path))


def test_strength_zero_reproduces_the_reconstruction(prior, faces, direction, tmp_path):
    net = tiny_net(prior)
    results = edit_folder(net, direction, [-2.0, 0.0, 2.0], tmp_path / "edits", input=faces, layers="0-1")
    assert [e.stem for e in results] == [p.stem for p in sorted(faces.iterdir())]
    for e in results:
        x = invert.read_rgb(faces / f"{e.stem}.png")
        recon = invert.invert_image(net, x).recon
        torch.testing.assert_close(e.recon, recon)
        assert torch.equal(e.edits[1], e.recon)  # strength 0: the reconstruction itself
        assert (e.edits[0] - e.recon).abs().max() > 1e-3 and (e.edits[2] - e.recon).abs().max() > 1e-3
        folder = tmp_path / "edits" / e.stem
        assert np.array_equal(read(folder / "edit_01_+0.00.png"), read(folder / "reconstruction.png"))
        assert (folder / "edit_00_-2.00.png").is_file() and (folder / "edit_02_+2.00.png").is_file()
        strip = read(folder / "strip.png")
        assert strip.shape == (32 + 4, 5 * (32 + 2) + 2, 3)  # input | reconstruction | 3 edits, 2-px padding
        torch.testing.assert_close(invert.load_code(folder / "code.safetensors", net), e.w)
    d = dirs.load_direction(direction)
    moved = dirs.apply_direction(results[0].w, d, [1.5], dirs.parse_layers("0-1", 8))[0] - results[0].w
    assert moved[2:].abs().max() == 0  # only the chosen layers move, by strength x scale x the unit direction
    torch.testing.assert_close(moved[0], 1.5 * d.scale * d.vector)


def test_codes_are_edited_without_images(prior, faces, direction, tmp_path):
    net = tiny_net(prior)
    inverted = invert.invert_folder(net, faces, tmp_path / "codes")
    results = edit_folder(net, direction, [0.0, 1.0], tmp_path / "edits", codes=tmp_path / "codes")
    for r, e in zip(inverted, results):
        torch.testing.assert_close(e.edits[0], r.recon)
        assert read(tmp_path / "edits" / e.stem / "strip.png").shape[1] == 3 * (32 + 2) + 2  # no input column


def test_a_direction_of_another_prior_fails_clearly(prior, faces, direction, tmp_path):
    G = load_prior(prior)
    with torch.no_grad():
        G.synthesis.b16.conv0.affine.weight.mul_(1.1)
    other = dirs.make_sefa(G, [0], 1, tmp_path / "other")[0]
    with pytest.raises(ValueError, match="made for another prior"):
        edit_folder(tiny_net(prior), other, [1.0], tmp_path / "edits", input=faces)
    assert not (tmp_path / "edits").exists()  # refused before anything is inverted or written
    with pytest.raises(ValueError, match=r"--layers: layers must lie in 0-7"):
        edit_folder(tiny_net(prior), direction, [1.0], tmp_path / "edits", input=faces, layers="5-9")


def test_cli_edit_from_a_checkpoint(prior, faces, tmp_path, capsys, tiny_psp_config):
    from translate.train import runner

    cfg = tiny_psp_config(prior, tmp_path / "run", "model.lpips_lambda=0", "model.id_lambda=0", "data.kind=toyfaces",
                          "data.toyfaces.task=faces", "data.toyfaces.size=32", "data.toyfaces.n_train=2",
                          "data.toyfaces.n_val=2", "data.batch_size=2", "trainer.max_steps=1",
                          "trainer.limit_val_batches=0")
    runner.fit(cfg)
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    out = tmp_path / "dirs"
    assert cli.main(["directions", "sefa", "--prior", str(prior), "--layers", "0-3", "--num", "1",
                     "--out", str(out)]) == 0
    direction = str(out / "sefa_0-3_00.safetensors")
    assert cli.main(["edit", "--ckpt", ckpt, "--input", str(faces), "--direction", direction, "--strength=-1:1:3",
                     "--out", str(tmp_path / "edits")]) == 0
    assert "2 image(s) edited at strengths -1, 0, 1" in capsys.readouterr().out
    stem = sorted(faces.iterdir())[0].stem
    assert np.array_equal(read(tmp_path / "edits" / stem / "edit_01_+0.00.png"),
                          read(tmp_path / "edits" / stem / "reconstruction.png"))
    G = load_prior(prior)
    with torch.no_grad():
        G.synthesis.b32.torgb.affine.bias.add_(1.0)
    other = dirs.make_sefa(G, [0], 1, tmp_path / "other")[0]
    assert cli.main(["edit", "--ckpt", ckpt, "--input", str(faces), "--direction", str(other),
                     "--out", str(tmp_path / "e2")]) == 2
    assert "made for another prior" in capsys.readouterr().err
    assert cli.main(["edit", "--ckpt", ckpt, "--input", str(faces), "--direction", direction, "--strength", "x",
                     "--out", str(tmp_path / "e3")]) == 2
    assert "--strength: expected start:stop:count" in capsys.readouterr().err
