"""Differentiable degradations for inversion through a degradation, and `invert --degrade` on a tiny prior: the code
is optimised so that the degraded render matches the (small) input, and the full-resolution result is written."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from nets.encoders import build_encoder
from nets.psp import PSPNet
from priors.loaders import load_prior
from translate.tools import invert
from translate.tools.degradations import Degradation, dct_matrix, parse_degradation

ENC = dict(output_size=32, input_size=32, channels=[4, 8, 8, 16], w_dim=16)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def smooth_image(size=32, seed=0):
    """A smooth RGB image (1, 3, size, size) in [-1, 1]: low frequencies, as faces are."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 4, 4, generator=gen) * 2 - 1
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def to_pil(x):
    return Image.fromarray(invert.to_uint8(x[0]))


def from_pil(img):
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 127.5 - 1


def psnr(a, b):
    return float(10 * torch.log10(4 / (a - b).square().mean()))


def test_parse_degradation_and_its_errors():
    assert parse_degradation("downsample:8") == Degradation("downsample", 8.0)
    assert str(parse_degradation("jpeg:30")) == "jpeg:30" and parse_degradation(None) is None
    for text, says in (("zoom:2", "expected one of downsample, blur, grayscale, jpeg"),
                       ("downsample:3.5", "an integer factor 2..32"), ("blur:-1", "sigma in \\(0, 32\\]"),
                       ("jpeg:0", "quality 1..100"), ("grayscale:2", "takes no value"),
                       ("downsample", "expected downsample:VALUE")):
        with pytest.raises(ValueError, match=says):
            parse_degradation(text)


def test_degradations_match_what_the_data_modules_do():
    x = smooth_image()
    down = parse_degradation("downsample:4")(x)
    assert down.shape == (1, 3, 8, 8)
    pil_down = from_pil(to_pil(x).resize((8, 8), Image.BICUBIC))
    assert psnr(down, pil_down) > 35  # PIL's antialiased bicubic, up to uint8 rounding
    gray = parse_degradation("grayscale")(x)
    pil_gray = torch.from_numpy(np.asarray(to_pil(x).convert("L"))).float() / 127.5 - 1
    assert (gray[0, 0] - pil_gray).abs().max() < 2 / 255 + 1e-6 and torch.equal(gray[:, 0], gray[:, 2])
    blurred = parse_degradation("blur:1.5")(x)
    assert blurred.shape == x.shape and psnr(blurred, x) > 25 and psnr(blurred, x) < 80
    buf = io.BytesIO()
    to_pil(x).save(buf, format="JPEG", quality=30, subsampling=0)
    jpeg = parse_degradation("jpeg:30")(x)
    assert psnr(jpeg, from_pil(Image.open(buf))) > 35  # PIL's JPEG (no chroma subsampling), up to rounding
    assert psnr(jpeg, x) < psnr(parse_degradation("jpeg:95")(x), x)  # lower quality, more loss
    d = dct_matrix()
    torch.testing.assert_close(d @ d.T, torch.eye(8), atol=1e-6, rtol=0)


@pytest.mark.parametrize("text", ["downsample:4", "blur:1", "grayscale", "jpeg:50"])
def test_degradations_pass_gradients(text):
    x = smooth_image().requires_grad_(True)
    parse_degradation(text)(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and bool(torch.isfinite(x.grad).all())


def test_inversion_through_a_downsampling_matches_the_small_input(prior, tmp_path):
    from datamodules.io import write_image

    torch.manual_seed(0)
    G = load_prior(prior)
    net = PSPNet(build_encoder("GradualStyleEncoder", input_nc=3, **ENC), G, G.mapping.w_avg, noise_mode="const")
    net = net.eval().requires_grad_(False)
    with torch.no_grad():  # the truth: an image the prior can make; the input: its 8-px version
        truth = net.decode(G.mapping(torch.randn(1, 16)))
    d = parse_degradation("downsample:4")
    small = d(truth)[0].clamp(-1, 1)
    start = invert.invert_image(net, small, degrade=d, refine_steps=1, lr=1e-9)  # ~the encoder's code
    r = invert.invert_image(net, small, degrade=d, refine_steps=8, lr=0.1, lambda_dom=0.1)
    assert r.recon.shape == (3, 32, 32)  # the full-resolution result
    assert r.mse < 0.5 * start.mse, (start.mse, r.mse)  # consistency: D(G(w)) approaches the input
    with torch.no_grad():
        assert r.mse == pytest.approx(float((d(r.recon[None]) - small[None]).square().mean()), rel=1e-4)
    # the CLI writes the full-resolution restorations of small inputs
    from translate import cli

    (tmp_path / "small").mkdir()
    write_image(tmp_path / "small" / "a.png", invert.to_uint8(small))
    results = invert.invert_folder(net, tmp_path / "small", tmp_path / "out", refine_steps=2, degrade=d)
    assert results[0].recon.shape == (3, 32, 32)
    assert Image.open(tmp_path / "out" / "a.png").size == (32, 32)
    with pytest.raises(ValueError, match="--degrade downsample:4: inversion through a degradation optimises the "
                                         "code; give --refine N"):
        invert.invert_image(net, small, degrade=d)
    with pytest.raises(ValueError, match="output is not divisible by 3"):
        invert.invert_image(net, small, degrade=parse_degradation("downsample:3"), refine_steps=1)
    assert cli.main(["invert", "--ckpt", "nothing.ckpt", "--input", "x", "--out", "y", "--degrade", "zoom"]) == 2
