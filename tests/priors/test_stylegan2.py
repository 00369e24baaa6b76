"""The StyleGAN2 generator and discriminator at tiny size: shapes, mapping/truncation/w_avg, style mixing, noise modes,
forward + backward, double backward (R1 / path length), torch.export, and the configuration checks."""
import pytest
import torch

from priors.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig


def tiny_g(**kw) -> Generator:
    torch.manual_seed(0)
    cfg = dict(z_dim=16, w_dim=16, img_resolution=32, channel_base=256, channel_max=16, mapping_layers=2)
    cfg.update(kw)
    return Generator(GeneratorConfig(**cfg))


def tiny_d(**kw) -> Discriminator:
    torch.manual_seed(0)
    cfg = dict(img_resolution=32, channel_base=256, channel_max=16)
    cfg.update(kw)
    return Discriminator(DiscriminatorConfig(**cfg))


def test_defaults_are_config_f():
    cfg = GeneratorConfig()
    assert (cfg.z_dim, cfg.w_dim, cfg.img_resolution, cfg.channel_base, cfg.channel_max, cfg.mapping_layers,
            cfg.mapping_lr_multiplier, cfg.w_avg_beta) == (512, 512, 1024, 32768, 512, 8, 0.01, 0.995)
    dcfg = DiscriminatorConfig()
    assert (dcfg.channel_base, dcfg.channel_max, dcfg.mbstd_group_size, dcfg.mbstd_num_channels) == (32768, 512, 4, 1)


@pytest.mark.parametrize("res", [32, 64, 256, 1024])
def test_n_latent_and_layout(res):
    G = Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=res, channel_base=res * 2, channel_max=4,
                                  mapping_layers=1))
    assert G.n_latent == G.num_ws == 2 * (res.bit_length() - 1) - 2
    assert G.synthesis.block_resolutions == [2**i for i in range(2, res.bit_length())]
    assert hasattr(G.synthesis.b4, "const") and hasattr(G.synthesis, f"b{res}")


def test_generator_mapping_truncation_and_w_avg_tracking():
    G = tiny_g().eval()
    z = torch.randn(4, 16)
    ws = G.mapping(z)
    assert ws.shape == (4, 8, 16) and torch.equal(ws[:, 0], ws[:, 7])
    G.mapping.w_avg.normal_()
    t = G.mapping(z, truncation_psi=0.5)
    torch.testing.assert_close(t, G.mapping.w_avg + 0.5 * (ws - G.mapping.w_avg))
    tc = G.mapping(z, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(tc[:, :3], t[:, :3])
    torch.testing.assert_close(tc[:, 3:], ws[:, 3:])
    before = G.mapping.w_avg.clone()
    G.mapping(z)  # eval: no update
    assert torch.equal(G.mapping.w_avg, before)
    G.train()
    G.mapping(z, skip_w_avg_update=True)
    assert torch.equal(G.mapping.w_avg, before)
    G.mapping(z)  # training: w_avg <- lerp(mean w, w_avg, beta)
    torch.testing.assert_close(G.mapping.w_avg, ws[:, 0].mean(0).lerp(before, 0.995))


def test_generator_noise_modes_mixing_and_errors():
    G = tiny_g().eval()
    ws = G.mapping(torch.randn(2, 16))
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        assert const.shape == (2, 3, 32, 32) and torch.isfinite(const).all()
        assert torch.equal(const, G.synthesis(ws, noise_mode="const"))
        for layer in (G.synthesis.b8.conv0, G.synthesis.b32.conv1):
            layer.noise_strength.fill_(0.5)
        assert not torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
        assert not torch.equal(G.synthesis(ws, noise_mode="none"), G.synthesis(ws, noise_mode="const"))
        torch.testing.assert_close(G.synthesis(ws, noise_mode="const", fused_modconv=False),
                                   G.synthesis(ws, noise_mode="const", fused_modconv=True), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(G(torch.zeros(1, 16), noise_mode="none"),
                                   G.synthesis(G.mapping(torch.zeros(1, 16)), noise_mode="none"))
    other = torch.zeros_like(ws)
    mixed = G.mix_styles(ws, other, range(4, 8))
    assert torch.equal(mixed[:, 4:], other[:, 4:]) and torch.equal(mixed[:, :4], ws[:, :4])
    G.train()
    mixed = G.mixing_regularization(ws, prob=1.0, generator=torch.Generator().manual_seed(3))
    kept = (mixed == ws).all(dim=2).all(dim=0)
    cutoff = int(kept.float().argmin())
    assert 1 <= cutoff < 8 and kept[:cutoff].all() and not kept[cutoff:].any()
    assert G.mixing_regularization(ws, prob=0.0) is ws
    with pytest.raises(ValueError, match=r"expected ws of shape \(N, 8, 16\), got \(1, 7, 16\)"):
        G.synthesis(torch.zeros(1, 7, 16))
    with pytest.raises(ValueError, match=r"noise_mode must be one of \['random', 'const', 'none'\], got 'fixed'"):
        G.synthesis(ws, noise_mode="fixed")
    with pytest.raises(ValueError, match=r"expected z of shape \(N, 16\), got \(2, 5\)"):
        G.mapping(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="power of two >= 4, got 48"):
        tiny_g(img_resolution=48)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, 32, 32\), got \(2, 3, 16, 16\)"):
        tiny_d()(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"batch \(6\) must be divisible by the group size \(4\)"):
        tiny_d()(torch.zeros(6, 3, 32, 32))


def test_conditional_generator_and_discriminator():
    G, D = tiny_g(c_dim=5), tiny_d(c_dim=5)
    c = torch.nn.functional.one_hot(torch.tensor([1, 3]), 5).float()
    img = G(torch.randn(2, 16), c, noise_mode="const")
    assert img.shape == (2, 3, 32, 32) and D(img, c).shape == (2, 1)
    with pytest.raises(ValueError, match=r"expected a label c of shape \(N, 5\), got None"):
        G.mapping(torch.randn(2, 16))


def test_generator_and_discriminator_train_step_with_double_backward():
    """A G and a D step with the regularizers that differentiate gradients: R1 (D) and path length (G)."""
    G, D = tiny_g().train(), tiny_d().train()
    z = torch.randn(4, 16)
    ws = G.mapping(z)
    fake = G.synthesis(ws)  # non-fused modconv in training
    loss_g = torch.nn.functional.softplus(-D(fake)).mean()
    loss_g.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.parameters())
    # path length: d(img * y)/dws, then backward through that gradient
    G.zero_grad()
    ws = G.mapping(z).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="const")
    (pl_grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    pl_grad.square().sum(2).mean().backward()
    assert G.synthesis.b32.conv1.weight.grad is not None and G.synthesis.b32.conv1.weight.grad.abs().sum() > 0
    # R1: |dD(real)/dreal|^2, backward into D's weights
    real = torch.randn(4, 3, 32, 32, requires_grad=True)
    (r1_grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    r1_grad.square().sum([1, 2, 3]).mean().backward()
    for name in ("b32.fromrgb.weight", "b32.conv1.weight", "b16.skip.weight", "b4.fc.weight"):
        grad = dict(D.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_discriminator_layout_and_minibatch_std():
    D = tiny_d()
    assert D.block_resolutions == [32, 16, 8]
    keys = set(D.state_dict())
    assert {"b32.fromrgb.weight", "b32.conv0.weight", "b32.conv1.weight", "b32.skip.weight", "b4.conv.weight",
            "b4.fc.weight", "b4.out.weight", "b32.conv1.resample_filter"} <= keys
    assert "b32.skip.bias" not in keys and "b16.fromrgb.weight" not in keys
    assert D.b4.conv.weight.shape[1] == 16 + 1  # the minibatch-stddev channel
    x = torch.randn(8, 4, 2, 2)
    y = D.b4.mbstd(x)  # groups of 4: sample i is with i + 2, i + 4, i + 6
    expected = (x.reshape(4, 2, 4, 2, 2).var(0, unbiased=False) + 1e-8).sqrt().mean([1, 2, 3])
    torch.testing.assert_close(y[:, 4, 0, 0], expected.repeat(4))


def test_torch_export_generator_and_discriminator():
    G, D = tiny_g().eval(), tiny_d().eval()

    class Synthesis(torch.nn.Module):
        def __init__(self, G):
            super().__init__()
            self.G = G

        def forward(self, ws):
            return self.G.synthesis(ws, noise_mode="const")

    ws = G.mapping(torch.randn(2, 16)).detach()
    for module, args in ((Synthesis(G), (ws,)), (D, (torch.randn(4, 3, 32, 32),))):
        ep = torch.export.export(module, args)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(*args), module(*args), atol=1e-5, rtol=1e-5)


def test_config_from_nvidia_init_kwargs():
    cfg = GeneratorConfig.from_nvidia({"z_dim": 64, "c_dim": 0, "w_dim": 32, "img_resolution": 256,
                                       "img_channels": 3, "mapping_kwargs": {"num_layers": 2},
                                       "synthesis_kwargs": {"channel_base": 16384, "channel_max": 256,
                                                            "num_fp16_res": 4, "conv_clamp": 256,
                                                            "architecture": "skip"}})
    assert (cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.channel_base, cfg.channel_max, cfg.conv_clamp) == (
        64, 32, 2, 16384, 256, 256)
    with pytest.raises(ValueError, match=r"unsupported synthesis_kwargs.architecture='resnet'"):
        GeneratorConfig.from_nvidia({"z_dim": 1, "c_dim": 0, "w_dim": 1, "img_resolution": 8, "img_channels": 3,
                                     "synthesis_kwargs": {"architecture": "resnet"}})
    with pytest.raises(ValueError, match=r"unsupported mapping_kwargs.conv_clamp=256"):  # a synthesis argument
        GeneratorConfig.from_nvidia({"z_dim": 1, "c_dim": 0, "w_dim": 1, "img_resolution": 8, "img_channels": 3,
                                     "mapping_kwargs": {"conv_clamp": 256}})
    with pytest.raises(ValueError, match="missing img_channels"):
        GeneratorConfig.from_nvidia({"z_dim": 1, "c_dim": 0, "w_dim": 1, "img_resolution": 8})
    with pytest.raises(ValueError, match=r"unknown GeneratorConfig fields \['n_mlp'\]"):
        GeneratorConfig.from_dict({"n_mlp": 8})


def test_conv_clamp_clamps():
    G = tiny_g(conv_clamp=0.01).eval()
    with torch.no_grad():
        G.synthesis.b32.torgb.bias.fill_(5.0)
        img = G.synthesis(G.mapping(torch.randn(1, 16)), noise_mode="const")
    # each ToRGB is clamped to +-0.01; the image is their upsampled sum over 4 resolutions
    assert img.abs().max() <= 4 * 0.01 + 1e-6


@pytest.mark.gpu
def test_cuda_matches_cpu_with_double_backward():
    """The same nets on a CUDA device (compiled ops where available): outputs and R1 gradients as on the CPU."""
    G, D = tiny_g().eval(), tiny_d().eval()
    z, real = torch.randn(4, 16), torch.randn(4, 3, 32, 32)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        results = []
        for device in ("cpu", "cuda"):
            G.to(device), D.to(device)
            with torch.no_grad():
                img = G(z.to(device), noise_mode="const")
            x = real.to(device).requires_grad_(True)
            (r1_grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            r1_grad.square().sum().backward()
            results.append([img, r1_grad, D.b32.conv0.weight.grad])
            D.zero_grad()
        for cpu, cuda in zip(*results):
            torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=1e-4)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_cpu_inference_path_equals_the_differentiable_one(noise_mode):
    """Without autograd, SynthesisLayer applies noise, bias and the activation in place: the same numbers."""
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=16, channel_base=64, channel_max=8,
                                  mapping_layers=2, conv_clamp=0.5))
    for name, p in G.named_parameters():
        if name.endswith("bias") or name.endswith("noise_strength"):
            p.data.normal_()
    ws = torch.randn(2, G.num_ws, 8)
    with torch.no_grad():
        fast = G.synthesis(ws, noise_mode=noise_mode)
    slow = G.synthesis(ws, noise_mode=noise_mode)  # grad enabled: bias_act's path
    assert slow.requires_grad
    torch.testing.assert_close(fast, slow.detach(), atol=1e-6, rtol=0)


def test_feature_offsets_enter_before_the_blocks_to_rgb():
    """An offset at block r is added to r's output features: at the last block only the (linear, unclamped) ToRGB
    sees it, so the image moves linearly in it; at a lower block the layers above render it."""
    G = tiny_g().eval()
    ws = G.mapping(torch.randn(2, 16))
    assert G.synthesis.feature_shape(16) == (16, 16, 16)
    with torch.no_grad():
        base = G.synthesis(ws, noise_mode="const")
        d1, d2 = torch.randn(2, 8, 32, 32), torch.randn(2, 8, 32, 32)
        f1, f2, f12 = (G.synthesis(ws, noise_mode="const", feature_offsets={32: d}) - base for d in (d1, d2, d1 + d2))
        assert f1.abs().max() > 1e-2
        torch.testing.assert_close(f12, f1 + f2, atol=1e-4, rtol=1e-4)
        assert torch.equal(G.synthesis(ws, noise_mode="const", feature_offsets={32: torch.zeros_like(d1)}), base)
        low = G.synthesis(ws, noise_mode="const", feature_offsets={16: torch.randn(2, 16, 16, 16)})
        assert (low - base).abs().max() > 1e-2
    with pytest.raises(ValueError, match=r"feature offset at 16 px: expected \(2, 16, 16, 16\), got \(2, 16, 8, 8\)"):
        G.synthesis(ws, feature_offsets={16: torch.zeros(2, 16, 8, 8)})
    with pytest.raises(ValueError, match=r"no block at 12 px \(blocks: \[4, 8, 16, 32\]\)"):
        G.synthesis(ws, feature_offsets={12: torch.zeros(2, 16, 12, 12)})
