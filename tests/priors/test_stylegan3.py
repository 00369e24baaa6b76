"""StyleGAN3 generator (configs T and R) against NVIDIA's own renders of tiny generators (golden files): key-for-key
loading, images, truncation, the input transform, one layer's output, the filter design, and the errors."""
import os

import pytest
import torch

from priors.stylegan3 import Generator, GeneratorConfig, input_transform, make_transform

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "sg3")
TOL = dict(atol=1e-4, rtol=0)  # the bound; measured differences are below 4e-6


def golden(name):
    return torch.load(os.path.join(DATA, f"{name}.pt"), weights_only=True)


def loaded(g):
    G = Generator(GeneratorConfig.from_nvidia(g["init_kwargs"]), design_filters=False)
    G.load_state_dict(g["state_dict"], strict=True)
    return G.eval()


@pytest.fixture(scope="module", params=["sg3t_tiny", "sg3r_tiny"])
def case(request):
    g = golden(request.param)
    return g, loaded(g)


def test_state_dict_keys_and_shapes_are_nvidias(case):
    g, G = case
    ours = G.state_dict()
    assert list(ours) == list(g["state_dict"])
    assert all(ours[k].shape == v.shape for k, v in g["state_dict"].items())
    assert G.num_ws == g["ws"].shape[1] == g["extra"]["layer_config"]["num_ws"]


def test_layer_plan_matches_nvidias(case):
    g, G = case
    for spec in g["extra"]["layer_config"]["layers"]:
        layer = getattr(G.synthesis, spec["name"])
        assert (layer.up_factor, layer.down_factor, layer.up_taps, layer.down_taps, layer.down_radial,
                layer.padding, layer.conv_kernel) == (
            spec["up_factor"], spec["down_factor"], spec["up_taps"], spec["down_taps"], spec["down_radial"],
            spec["padding"], spec["conv_kernel"]), spec["name"]
        assert (layer.gain, layer.slope, layer.conv_clamp) == (spec["gain"], spec["slope"], spec["conv_clamp"])


@torch.no_grad()
def test_renders_nvidias_images_and_truncation(case):
    g, G = case
    torch.testing.assert_close(G.mapping(g["z"]), g["ws"], **TOL)
    torch.testing.assert_close(G(g["z"][:2]), g["img"][:2], **TOL)
    ws_t = G.mapping(g["z"], truncation_psi=0.7)
    torch.testing.assert_close(ws_t, g["extra"]["ws_trunc0.7"], **TOL)
    torch.testing.assert_close(G.synthesis(ws_t[2:]), g["extra"]["img_trunc0.7"][2:], **TOL)


@torch.no_grad()
def test_replaced_input_transform_and_zoom(case):
    g, G = case
    ws = g["ws"][:1]
    try:
        torch.testing.assert_close(make_transform(**g["extra"]["transform_forward_args"]).float(),
                                   g["extra"]["transform_forward"].float(), atol=1e-6, rtol=0)
        G.set_transform(**g["extra"]["transform_forward_args"])  # gen_images' --translate / --rotate
        torch.testing.assert_close(G.synthesis.input.transform, g["extra"]["transform"], atol=1e-6, rtol=0)
        torch.testing.assert_close(G.synthesis(ws), g["extra"]["img_transformed"][:1], **TOL)
        G.synthesis.input.transform.copy_(g["extra"]["transform_zoom"])  # damps the out-of-band frequencies
        torch.testing.assert_close(G.synthesis(ws), g["extra"]["img_transformed_zoom"][:1], **TOL)
    finally:
        G.synthesis.input.transform.copy_(g["state_dict"]["synthesis.input.transform"])


@torch.no_grad()
def test_one_layer_and_the_per_layer_statistics(case):
    g, G = case
    dbg = g["extra"]["debug"]
    torch.testing.assert_close(getattr(G.synthesis, dbg["layer"])(dbg["x_in"], dbg["w"]), dbg["x_out"], **TOL)
    ws = g["ws"][:2].unbind(1)
    x = G.synthesis.input(ws[0])
    torch.testing.assert_close(x.mean([2, 3]), g["extra"]["layer_mean"]["input"][:2], atol=1e-5, rtol=1e-5)
    for name, w in zip(G.synthesis.layer_names, ws[1:]):
        x = getattr(G.synthesis, name)(x, w)
        torch.testing.assert_close(x.mean([2, 3]), g["extra"]["layer_mean"][name][:2], atol=1e-4, rtol=1e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_filters_designed_from_scratch_equal_the_files():
    pytest.importorskip("scipy")
    for name in ("sg3t_tiny", "sg3r_tiny"):
        g = golden(name)
        G = Generator(GeneratorConfig.from_nvidia(g["init_kwargs"]))
        for k, v in G.state_dict().items():
            if k.endswith("_filter"):
                torch.testing.assert_close(v, g["state_dict"][k], atol=1e-7, rtol=0, msg=k)


def test_training_mode_tracks_the_input_magnitude():
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=16, channel_base=64, channel_max=16,
                                  num_layers=4, num_critical=1, magnitude_ema_beta=0.5))
    layer = getattr(G.synthesis, G.synthesis.layer_names[0])
    before = float(layer.magnitude_ema)
    img = G.train()(torch.randn(2, 8))
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    assert float(layer.magnitude_ema) != before
    G.eval()(torch.randn(2, 8))
    after = float(layer.magnitude_ema)
    G(torch.randn(2, 8))
    assert float(layer.magnitude_ema) == after


def test_input_transform_is_the_inverse_of_gen_images_matrix():
    m = make_transform((0.25, -0.5), 30.0)
    torch.testing.assert_close(input_transform((0.25, -0.5), 30.0).double() @ m, torch.eye(3, dtype=torch.float64),
                               atol=1e-6, rtol=0)


def test_errors_name_what_is_wrong():
    g = golden("sg3t_tiny")
    with pytest.raises(ValueError, match=r"unsupported foo=1"):
        GeneratorConfig.from_nvidia({**g["init_kwargs"], "foo": 1})
    with pytest.raises(ValueError, match=r"missing img_resolution"):
        GeneratorConfig.from_nvidia({k: v for k, v in g["init_kwargs"].items() if k != "img_resolution"})
    with pytest.raises(ValueError, match=r"unknown StyleGAN3 GeneratorConfig fields \['bar'\]"):
        GeneratorConfig.from_dict({"bar": 1})
    G = loaded(g)
    with pytest.raises(ValueError, match=r"expected ws of shape \(N, 16, 32\), got \(1, 14, 32\)"):
        G.synthesis(torch.zeros(1, 14, 32))


@pytest.mark.gpu
def test_golden_images_on_cuda():
    """On a GPU (impl='auto': the compiled filtered_lrelu where it exists, else the reference path), TF32 off."""
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for name in ("sg3t_tiny", "sg3r_tiny"):
            g = golden(name)
            G = loaded(g).cuda()
            with torch.no_grad():
                img = G(g["z"].cuda())
            torch.testing.assert_close(img.cpu(), g["img"], atol=1e-4, rtol=0)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
