"""Inversion on tiny nets: encoder / refine / ReStyle modes, refinement lowers the objective, the domain term keeps
codes near the encoder's domain, codes round-trip through safetensors, interpolation ends reproduce the
inversions, style mixing, the CLI on a pSp checkpoint, and clear errors."""
import pytest
import torch

from nets.encoders import build_encoder
from nets.psp import PSPNet
from priors.loaders import load_prior
from translate import cli
from translate.tools import invert
from translate.tools.invert import (domain_distance, interpolate, invert_folder, invert_image, load_code,
                              mix_grid, mix_layers, save_code)

ENC = dict(output_size=32, input_size=32, channels=[4, 8, 8, 16], w_dim=16)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These nets are tiny: a second thread only adds synchronisation (100x slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_net(prior, input_nc=3, seed=0, restyle_iters=0):
    torch.manual_seed(seed)
    G = load_prior(prior)
    enc = build_encoder("GradualStyleEncoder", input_nc=input_nc, **ENC)
    net = PSPNet(enc, G, G.mapping.w_avg, noise_mode="const", restyle_iters=restyle_iters)
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    from datamodules.toyfaces import write_toyfaces

    return write_toyfaces(tmp_path_factory.mktemp("faces"), n=3, size=32, split="val") / "images"


def images(faces):
    return [invert.read_rgb(p) for p in sorted(faces.iterdir())]


def test_encoder_mode_writes_codes_and_reconstructions(prior, faces, tmp_path):
    net = tiny_net(prior)
    results = invert_folder(net, faces, tmp_path / "codes")
    assert [r.stem for r in results] == [p.stem for p in sorted(faces.iterdir())]
    for r in results:
        assert (tmp_path / "codes" / f"{r.stem}.png").is_file()
        w = load_code(tmp_path / "codes" / f"{r.stem}.safetensors", net)
        assert torch.equal(w, r.w) and w.shape == (8, 16)  # the code round-trips exactly
        with torch.no_grad():  # the plain mode is one encoder pass
            torch.testing.assert_close(r.w, net.encode(invert.read_rgb(faces / f"{r.stem}.png")[None])[0])
        assert r.mse > 0 and r.domain >= 0 and r.seconds > 0 and r.lpips is None

    import shutil

    mixed = shutil.copytree(faces, tmp_path / "mixed")
    (mixed / "broken.png").write_bytes(b"not an image")  # reported and skipped, as predict does
    with pytest.warns(UserWarning, match="skipping .*broken.png"):
        again = invert_folder(net, mixed, tmp_path / "codes2")
    assert [r.stem for r in again] == [r.stem for r in results] and not (tmp_path / "codes2" / "broken.png").exists()
    from PIL import Image

    wide = tmp_path / "wide"
    wide.mkdir()
    Image.open(sorted(faces.iterdir())[0]).resize((48, 40)).save(wide / "w.png")
    with pytest.warns(UserWarning, match=r"1 image\(s\) are not square \(w.png\): resized .* distorts them"):
        invert_folder(net, wide, tmp_path / "codes3")


def test_refinement_lowers_the_objective_and_the_error(prior, faces):
    net = tiny_net(prior)
    results = [invert_image(net, x, refine_steps=15, lambda_dom=1.0, lr=0.05) for x in images(faces)]
    start = [r.history[0] for r in results]
    end = [r.history[-1] for r in results]
    assert sum(end) < 0.9 * sum(start), (start, end)
    base = [invert_image(net, x) for x in images(faces)]
    assert sum(r.mse for r in results) < sum(r.mse for r in base)
    # on average over the images, the objective falls at (almost) every step
    mean = torch.tensor([r.history for r in results]).mean(0)
    assert (mean[1:] <= mean[:-1] + 1e-6).float().mean() >= 0.8, mean


def test_domain_term_keeps_codes_closer_to_the_encoder(prior, faces):
    net = tiny_net(prior)
    kw = dict(refine_steps=15, lr=0.05)
    with_dom = [invert_image(net, x, lambda_dom=50.0, **kw) for x in images(faces)]
    without = [invert_image(net, x, lambda_dom=0.0, **kw) for x in images(faces)]
    assert sum(r.domain for r in with_dom) < sum(r.domain for r in without)
    # and the reported distance is ||w - E(G(w))|| of the written code
    r = with_dom[0]
    assert r.domain == pytest.approx(float(domain_distance(net, r.w[None])[0]), rel=1e-4)


def test_lpips_term_enters_the_objective(prior, faces):
    from nets.perceptual import LPIPS

    net = tiny_net(prior)
    x = images(faces)[0]
    lp = LPIPS("alex").eval().requires_grad_(False)
    r = invert_image(net, x, refine_steps=2, lambda_vgg=1.0, lambda_dom=0.0, lpips=lp)
    plain = invert_image(net, x, refine_steps=2, lambda_vgg=1.0, lambda_dom=0.0)
    assert r.lpips is not None and plain.lpips is None
    start = invert_image(net, x, lpips=lp)  # the encoder's code, scored with LPIPS
    # the same start code: the objective is the MSE plus lambda_vgg x LPIPS
    assert r.history[0] == pytest.approx(plain.history[0] + start.lpips, rel=1e-4)


def test_restyle_mode(prior, faces):
    net = tiny_net(prior, input_nc=6, restyle_iters=1)
    x = images(faces)[0]
    one, three = invert_image(net, x, restyle=1), invert_image(net, x, restyle=3)
    with torch.no_grad():  # K iterations from the average latent, each adding E([x, G(w)])
        w = net.latent_avg[None]
        for _ in range(3):
            w = w + net.encoder(torch.cat([x[None], net.decode(w)], 1))
    torch.testing.assert_close(three.w, w[0])
    assert not torch.allclose(one.w, three.w)
    refined = invert_image(net, x, restyle=2, refine_steps=3)
    assert refined.history[-1] < refined.history[0]
    with pytest.raises(ValueError, match=r"ReStyle needs a ReStyle-trained encoder \(trained with model.restyle_iters"):
        invert_image(tiny_net(prior), x, restyle=2)


def test_interpolation_ends_reproduce_the_inversions_and_mixing(prior, faces):
    net = tiny_net(prior)
    a, b = (invert_image(net, x) for x in images(faces)[:2])
    frames = interpolate(net, a.w, b.w, 5)
    assert frames.shape == (5, 3, 32, 32)
    torch.testing.assert_close(frames[0], a.recon, atol=1e-5, rtol=0)
    torch.testing.assert_close(frames[-1], b.recon, atol=1e-5, rtol=0)
    assert (frames[2] - a.recon).abs().max() > 1e-4
    assert mix_layers(18, "coarse") == [0, 1, 2, 3] and mix_layers(18, "fine") == list(range(8, 18))
    assert mix_layers(8, "coarse") == [0, 1] and mix_layers(8, "medium") == [2, 3]
    assert mix_layers(8, "fine") == [4, 5, 6, 7]
    grid = mix_grid(net, a.w, b.w, "fine")
    assert grid.shape == (4, 3, 32, 32)
    torch.testing.assert_close(grid[0], a.recon, atol=1e-5, rtol=0)
    assert (grid[2] - a.recon).abs().max() > 1e-4 and (grid[2] - b.recon).abs().max() > 1e-4


def test_bad_codes_are_clear_errors(prior, tmp_path):
    net = tiny_net(prior)
    with pytest.raises(FileNotFoundError, match="code file not found"):
        load_code(tmp_path / "missing.safetensors", net)
    path = save_code(torch.zeros(10, 16), tmp_path / "big.safetensors")
    with pytest.raises(ValueError, match=r"the code is \(10, 16\) \(n_latent, w_dim\), the prior takes \(8, 16\)"):
        load_code(path, net)
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="not a safetensors code file"):
        load_code(tmp_path / "junk.safetensors", net)
    nan = save_code(torch.full((8, 16), float("nan")), tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match="the code holds NaN or infinite values"):
        load_code(nan, net)
    with pytest.raises(ValueError, match="cannot invert images"):
        invert_image(tiny_net(prior, input_nc=1), torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="--steps"):
        interpolate(net, torch.zeros(8, 16), torch.zeros(8, 16), 1)
    G = load_prior(prior)  # a feature-offset encoder's codes alone do not reconstruct: refused, not silently worse
    featured = PSPNet(build_encoder("GradualStyleEncoder", input_nc=3, **ENC), G, G.mapping.w_avg, feature_res=16)
    with pytest.raises(ValueError, match="trained with model.feature_res 16"):
        invert_image(featured.eval(), torch.zeros(3, 32, 32))


def fit_tiny_psp(make_config, prior, run_dir, *extra):
    from translate.train import runner

    cfg = make_config(prior, run_dir, "model.lpips_lambda=0", "model.id_lambda=0", "data.kind=toyfaces",
                      "data.toyfaces.task=faces", "data.toyfaces.size=32", "data.toyfaces.n_train=2",
                      "data.toyfaces.n_val=2", "data.batch_size=2", "trainer.max_steps=1",
                      "trainer.limit_val_batches=0", *extra)
    _, module = runner.fit(cfg)
    return str(run_dir / "checkpoints" / "last.ckpt"), module


def test_cli_invert_and_interpolate_from_a_checkpoint(prior, faces, tmp_path, capsys, tiny_psp_config):
    ckpt, _ = fit_tiny_psp(tiny_psp_config, prior, tmp_path / "run")
    codes = tmp_path / "codes"
    assert cli.main(["invert", "--ckpt", ckpt, "--input", str(faces), "--out", str(codes), "--refine", "2"]) == 0
    printed = capsys.readouterr().out
    assert "LPIPS is off" in printed and "||w - E(G(w))||" in printed and "mean |" in printed
    a, b = sorted(codes.glob("*.safetensors"))[:2]
    grid = tmp_path / "grid.png"
    assert cli.main(["interpolate", "--ckpt", ckpt, "--codes", str(a), str(b), "--steps", "4",
                     "--out", str(grid)]) == 0
    assert grid.is_file()
    assert cli.main(["interpolate", "--ckpt", ckpt, "--codes", str(a), str(b), "--mix", "coarse",
                     "--out", str(tmp_path / "mix.png")]) == 0
    assert cli.main(["interpolate", "--ckpt", ckpt, "--codes", str(a), str(tmp_path / "nope.safetensors"),
                     "--out", str(grid)]) == 2
    assert "code file not found" in capsys.readouterr().err
    for steps, says in (("100000", "--steps: expected 2 (the two ends) to 1024, got 100000"),):
        assert cli.main(["interpolate", "--ckpt", ckpt, "--codes", str(a), str(b), "--steps", steps,
                         "--out", str(grid)]) == 2
        assert says in capsys.readouterr().err
    assert cli.main(["interpolate", "--ckpt", ckpt, "--codes", str(a), str(b), "--out", str(tmp_path / "g.pt")]) == 2
    assert "expected an image file for the grid" in capsys.readouterr().err
    assert cli.main(["invert", "--ckpt", ckpt, "--input", str(faces), "--out", str(codes), "--restyle", "2"]) == 2
    assert "ReStyle needs a ReStyle-trained encoder" in capsys.readouterr().err
    # out-of-range options are errors naming them (not silently "off"); a second run warns what it replaces
    for option, value, says in (("--refine", "-1", "--refine: expected a number of steps >= 0"),
                                ("--lambda-dom", "nan", "--lambda-dom: expected a weight >= 0, got nan"),
                                ("--lambda-dom", "-2", "--lambda-dom: expected a weight >= 0"),
                                ("--lr", "-1", "--lr: expected a learning rate > 0"),
                                ("--restyle", "-1", "--restyle: expected a number of ReStyle iterations")):
        assert cli.main(["invert", "--ckpt", ckpt, "--input", str(faces), "--out", str(tmp_path / "o"), option,
                         value]) == 2, option
        assert says in capsys.readouterr().err, option
    with pytest.warns(UserWarning, match=r"existing file\(s\) will be replaced"):
        assert cli.main(["invert", "--ckpt", ckpt, "--input", str(faces), "--out", str(codes)]) == 0
    # nothing readable: a non-zero exit, as predict
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipping"):
        assert cli.main(["invert", "--ckpt", ckpt, "--input", str(bad), "--out", str(tmp_path / "o2")]) == 1
    assert "no image could be inverted" in capsys.readouterr().err


def test_restyle_training_option(prior, faces, tmp_path, monkeypatch, capsys, tiny_psp_config):
    from nets.psp import build_psp_net
    from translate.methods.psp import PSP, PSPConfig

    calls = []
    original = PSP.manual_backward
    monkeypatch.setattr(PSP, "manual_backward", lambda self, loss: calls.append(1) or original(self, loss))
    ckpt, module = fit_tiny_psp(tiny_psp_config, prior, tmp_path / "run", "model.restyle_iters=3",
                                "model.w_norm_lambda=0.01")
    assert len(calls) == 3  # one backward per ReStyle iteration of the single training step
    net = module.net.eval()
    assert net.encoder.input_nc == 6 and net.restyle_iters == 3  # the image + the current reconstruction
    x = invert.read_rgb(sorted(faces.iterdir())[0])[None]
    with torch.no_grad():
        w, rec = net.latent_avg[None], net.decode(net.latent_avg[None], noise_mode="const")
        for _ in range(3):  # residuals from the average latent and its image
            w = w + net.encoder(torch.cat([x, rec], 1))
            rec = net.decode(w, noise_mode="const")
        torch.testing.assert_close(net.encode(x), w)
        rebuilt = build_psp_net(net.spec())  # what an exported bundle rebuilds
        rebuilt.load_state_dict(net.state_dict())
        torch.testing.assert_close(rebuilt.eval().encode(x), w)
    codes = tmp_path / "codes"
    assert cli.main(["invert", "--ckpt", ckpt, "--input", str(faces), "--out", str(codes), "--restyle", "2"]) == 0
    assert len(list(codes.glob("*.safetensors"))) == 3
    assert "mean |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="model.restyle_iters must be >= 0"):
        PSP(model=PSPConfig(prior=str(prior), restyle_iters=-1, lpips_lambda=0, id_lambda=0))


def test_refinement_with_a_stylegan3_prior(sg3_prior, faces):
    """invert --refine through a StyleGAN3 decoder (n codes = its num_ws), with and without the domain term."""
    torch.manual_seed(0)
    G = load_prior(sg3_prior)
    enc = build_encoder("GradualStyleEncoder", input_nc=3, n_styles=G.num_ws, **ENC)
    net = PSPNet(enc, G, G.mapping.w_avg, noise_mode="const").eval().requires_grad_(False)
    x = images(faces)[0]
    kw = dict(refine_steps=8, lr=0.05)
    plain, with_dom = invert_image(net, x, lambda_dom=0.0, **kw), invert_image(net, x, lambda_dom=50.0, **kw)
    assert plain.w.shape == (G.num_ws, 16)
    assert plain.history[-1] < plain.history[0] and with_dom.history[-1] < with_dom.history[0]
    assert with_dom.domain < plain.domain


def test_restyle_with_a_stylegan3_prior_and_the_spec_round_trip(sg3_prior, faces):
    """ReStyle iterations through a StyleGAN3 decoder, and a PSPNet rebuilt from its spec (as a bundle is) takes the
    same weights and gives the same codes."""
    from nets.psp import build_psp_net

    torch.manual_seed(0)
    G = load_prior(sg3_prior)
    enc = build_encoder("GradualStyleEncoder", input_nc=6, n_styles=G.num_ws, **ENC)
    net = PSPNet(enc, G, G.mapping.w_avg, noise_mode="const", restyle_iters=1).eval().requires_grad_(False)
    x = images(faces)[0]
    two = invert_image(net, x, restyle=2)
    with torch.no_grad():
        w = net.latent_avg[None]
        for _ in range(2):
            w = w + net.encoder(torch.cat([x[None], net.decode(w)], 1))
    torch.testing.assert_close(two.w, w[0])
    spec = net.spec()
    assert spec["decoder_architecture"] == "stylegan3" and spec["encoder"]["n_styles"] == G.num_ws
    rebuilt = build_psp_net(spec)
    rebuilt.load_state_dict(net.state_dict())
    torch.testing.assert_close(invert_image(rebuilt.eval(), x, restyle=2).w, two.w)
