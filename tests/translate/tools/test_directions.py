"""Latent directions: SeFa equals an independent eigendecomposition, GANSpace components are orthonormal and ordered,
a boundary recovers a planted linear label, direction files round-trip with their metadata, and a direction made
for another prior is refused."""
import numpy as np
import pytest
import torch

from priors.loaders import load_prior
from translate import cli
from translate.tools import directions as dirs


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_layers_and_strengths_parse():
    assert dirs.parse_layers("0-2,5", 8) == [0, 1, 2, 5] and dirs.parse_layers("all", 3) == [0, 1, 2]
    assert dirs.format_layers([0, 1, 2, 5, 7]) == "0-2,5,7"
    assert dirs.parse_strengths("-3:3:7") == [-3, -2, -1, 0, 1, 2, 3] and dirs.parse_strengths("-1,2") == [-1, 2]
    with pytest.raises(ValueError, match=r"--layers: layers must lie in 0-7 \(the prior has 8 codes\)"):
        dirs.parse_layers("6-9", 8)
    with pytest.raises(ValueError, match="--layers: expected layers like 0-5"):
        dirs.parse_layers("3-1", 8)
    with pytest.raises(ValueError, match="--strength: expected start:stop:count"):
        dirs.parse_strengths("-3:3")


def test_sefa_equals_an_independent_eigendecomposition(prior):
    G = load_prior(prior)
    layers = [0, 1, 2]
    vectors, values = dirs.sefa(G.synthesis, layers, 4)
    # independently: the conv layers reading ws 0-2 are b4.conv1 (w0), b8.conv0 (w1), b8.conv1 (w2), as SeFa
    # reads the style weights; columns of W^T normalised, eigenvectors of W^T W by numpy's general eig
    rows = [G.synthesis.b4.conv1.affine.weight, G.synthesis.b8.conv0.affine.weight, G.synthesis.b8.conv1.affine.weight]
    wt = torch.cat(rows).detach().double().numpy().T  # (w_dim, channels)
    wt = wt / np.linalg.norm(wt, axis=0, keepdims=True)
    ev, evec = np.linalg.eig(wt @ wt.T)
    order = np.argsort(-ev.real)[:4]
    np.testing.assert_allclose(values.numpy(), ev.real[order], rtol=1e-4)
    for k, i in enumerate(order):
        cos = abs(float(np.dot(vectors[k].double().numpy(), evec[:, i].real)))
        assert cos == pytest.approx(1.0, abs=1e-4), (k, cos)  # the same vector up to sign
    assert (values[:-1] >= values[1:]).all()


def test_ganspace_components_are_orthonormal_and_ordered(prior):
    G = load_prior(prior)
    vectors, stds, mean = dirs.ganspace(G, 6, samples=2000)
    torch.testing.assert_close(vectors @ vectors.T, torch.eye(6), atol=1e-5, rtol=0)
    assert (stds[:-1] >= stds[1:]).all() and stds[-1] > 0
    w = dirs.sample_w(G, 2000)
    proj = (w - mean) @ vectors.T  # the stds are those of W along each component
    torch.testing.assert_close(proj.std(0), stds, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("kind", ["binary", "scalar"])
def test_a_boundary_recovers_a_planted_linear_label(kind):
    gen = torch.Generator().manual_seed(0)
    codes = torch.randn(400, 16, generator=gen) * torch.linspace(0.5, 2, 16)  # anisotropic, as W is
    planted = torch.randn(16, generator=gen)
    planted = planted / planted.norm()
    score = codes @ planted
    labels = (score > 0.3).float() if kind == "binary" else 2 * score + 0.05 * torch.randn(400, generator=gen)
    b = dirs.fit_boundary(codes, labels)
    assert b.kind == kind
    assert float(b.normal @ planted) > 0.95, float(b.normal @ planted)  # direction and sign
    assert b.score > (0.97 if kind == "binary" else 0.99)
    with pytest.raises(ValueError, match="all 400 codes have the label 1.0"):
        dirs.fit_boundary(codes, torch.ones(400))


def test_direction_files_round_trip_and_other_priors_are_refused(prior, tmp_path):
    from priors.loaders import save_prior

    G = load_prior(prior)
    paths = dirs.make_sefa(G, [0, 1], 3, tmp_path / "dirs")
    assert [p.name for p in paths] == [f"sefa_0-1_{k:02d}.safetensors" for k in range(3)]
    d = dirs.load_direction(paths[0])
    vectors, _ = dirs.sefa(G.synthesis, [0, 1], 3)
    torch.testing.assert_close(d.vector, vectors[0])
    assert d.layers == [0, 1] and d.method == "sefa" and d.n_latent == 8 and d.how["rank"] == 0
    assert d.scale == pytest.approx(float((dirs.sample_w(G, 10000, seed=1) @ d.vector).std()), rel=1e-5)
    dirs.check_direction(d, G.synthesis)  # its own prior: fine
    other = load_prior(prior)
    with torch.no_grad():
        other.synthesis.b8.conv1.weight.add_(0.01)  # same shapes, other weights
    with pytest.raises(ValueError, match="made for another prior .*make one for this prior"):
        dirs.check_direction(d, other.synthesis, paths[0])
    torch.manual_seed(1)
    from priors.stylegan2 import Generator, GeneratorConfig

    bigger = Generator(GeneratorConfig(z_dim=16, w_dim=8, img_resolution=32, channel_base=256, channel_max=16,
                                       mapping_layers=2))
    with pytest.raises(ValueError, match=r"made for a prior with 8 codes of 16 dims; this prior has 8 x 8"):
        dirs.check_direction(d, bigger.synthesis, paths[0])
    # the same weights saved again (another file) keep the fingerprint
    assert dirs.prior_fingerprint(load_prior(save_prior(G, tmp_path / "copy")).synthesis) == d.prior
    (tmp_path / "junk.safetensors").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a safetensors direction file"):
        dirs.load_direction(tmp_path / "junk.safetensors")


def test_cli_makes_ganspace_and_boundary_directions(prior, tmp_path, capsys):
    from translate.tools.invert import save_code

    assert cli.main(["directions", "ganspace", "--prior", str(prior), "--layers", "0-3", "--num", "2",
                     "--samples", "500", "--out", str(tmp_path / "dirs")]) == 0
    assert "ganspace, layers 0-3" in capsys.readouterr().out
    d = dirs.load_direction(tmp_path / "dirs" / "ganspace_0-3_01.safetensors")
    assert d.how["rank"] == 1 and 0 < d.how["variance_ratio"] < 1
    # a boundary from codes and a CSV: the label is planted along one axis of W
    gen = torch.Generator().manual_seed(0)
    rows = ["file,label"]
    for i in range(40):
        w = torch.randn(8, 16, generator=gen)
        save_code(w, tmp_path / "codes" / f"img{i:02d}.safetensors")
        rows.append(f"img{i:02d}.png,{int(w[:, 3].mean() > 0)}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    assert cli.main(["directions", "boundary", "--prior", str(prior), "--codes", str(tmp_path / "codes"),
                     "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "dirs")]) == 0
    b = dirs.load_direction(tmp_path / "dirs" / "boundary_labels.safetensors")
    assert b.how["kind"] == "binary" and b.how["score"] == 1.0 and b.vector.abs().argmax() == 3 and b.vector[3] > 0
    (tmp_path / "bad.csv").write_text("img00.png,tall\nimg01.png,short\n")
    assert cli.main(["directions", "boundary", "--prior", str(prior), "--codes", str(tmp_path / "codes"),
                     "--labels", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "dirs")]) == 2
    assert "bad.csv, line 2: the label 'short' is not a number" in capsys.readouterr().err


def test_toy_face_boundaries_use_the_known_attributes(prior, tmp_path):
    from datamodules.toyfaces import face_params
    from nets.encoders import build_encoder
    from nets.psp import PSPNet

    torch.manual_seed(0)
    G = load_prior(prior)
    enc = build_encoder("GradualStyleEncoder", input_nc=3, output_size=32, input_size=32, channels=[4, 8, 8, 16],
                        w_dim=16)
    net = PSPNet(enc, G, G.mapping.w_avg, noise_mode="const").eval().requires_grad_(False)
    yaw = dirs.toyface_labels(6, "yaw")
    assert yaw == [face_params(0, "train", i).yaw for i in range(6)]
    assert set(dirs.toyface_labels(6, "glasses")) <= {0.0, 1.0}
    codes = dirs.toyface_codes(net, 6)
    assert codes.shape == (6, 8, 16)
    path = dirs.make_boundary(net.decoder, [0, 1], tmp_path, codes, torch.tensor(yaw), "yaw",
                              {"toyfaces": 6, "attribute": "yaw"})
    d = dirs.load_direction(path)
    assert path.name == "boundary_yaw.safetensors" and d.how["kind"] == "scalar" and d.layers == [0, 1]
    dirs.check_direction(d, G.synthesis)  # the net's prior is the prior file's
    with pytest.raises(ValueError, match="--attribute: expected one of"):
        dirs.toyface_labels(3, "beard")
