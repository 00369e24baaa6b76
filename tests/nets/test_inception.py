import numpy as np
import pytest
import torch
import torchvision

from nets.inception import LAYOUTS, NUM_FEATURES, InceptionFeatures, load_inception, resize_bilinear_tf1
from nets.junyanz import WeightsImportError
from nets.perceptual import MissingWeightsError
from safeio import LoadError


def _randomise_bn(net):
    """Non-trivial BatchNorm statistics, so that a wrong pool or a missed key changes the features."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


@pytest.fixture(scope="module")
def fid_file(tmp_path_factory):
    """A converted-FID-style file (random weights): no `num_batches_tracked`, 1008 classes."""
    torch.manual_seed(0)
    net = _randomise_bn(InceptionFeatures("fid"))
    path = tmp_path_factory.mktemp("inception") / "pt_inception.pth"
    torch.save({k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    return net, path


def _images(n=1, h=40, w=56, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


def test_resize_bilinear_tf1_definition():
    """Output pixel i samples the input at i * in / out, without the half-pixel offset, border repeated."""
    x = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4) ** 1.5
    out = resize_bilinear_tf1(x, 5)
    a = x[0, 0].numpy()

    def sample(pos, n):
        lo = int(np.floor(pos))
        return lo, min(lo + 1, n - 1), pos - lo

    expected = np.zeros((5, 5), np.float32)
    for i in range(5):
        y0, y1, fy = sample(i * 3 / 5, 3)
        for j in range(5):
            x0, x1, fx = sample(j * 4 / 5, 4)
            top = a[y0, x0] + (a[y0, x1] - a[y0, x0]) * fx
            bottom = a[y1, x0] + (a[y1, x1] - a[y1, x0]) * fx
            expected[i, j] = top + (bottom - top) * fy
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=1e-6)
    assert torch.equal(resize_bilinear_tf1(x[..., :3, :3], 3), x[..., :3, :3])


def test_fid_file_loads_strictly_and_reproduces_features(fid_file):
    src, path = fid_file
    net = load_inception(path, "fid")
    assert net.num_features == NUM_FEATURES and not net.training
    net.train()
    assert not any(m.training for m in net.modules())
    for k, v in src.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    x = _images()
    with torch.no_grad():
        f = net(x)
    assert f.shape == (1, NUM_FEATURES) and torch.isfinite(f).all() and f.abs().sum() > 0
    # uint8 in [0, 255] and float in [0, 1] are the same images; 1-channel is gray RGB; (x - 128) / 128 at 299 px
    prepared = net._prepare(x)
    assert prepared.shape == (1, 3, 299, 299)
    torch.testing.assert_close(net._prepare(x.float() / 255), prepared)
    torch.testing.assert_close(net._prepare(x[:, :1]), net._prepare(x[:, :1].expand(-1, 3, -1, -1)))
    torch.testing.assert_close(prepared, (resize_bilinear_tf1(x.float(), 299) - 128) / 128)


def test_wrong_key_or_layout_fails_naming_it(fid_file, tmp_path):
    _, path = fid_file
    sd = torch.load(path, weights_only=True)
    renamed = {k.replace("Mixed_6b.branch7x7_1", "Mixed_6b.branch7x7_X"): v for k, v in sd.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(LoadError, match=r"--inception \(eval\.inception_weights\) .*missing .*"
                                        r"Mixed_6b\.branch7x7_1\.conv\.weight.*unexpected .*branch7x7_X"):
        load_inception(tmp_path / "renamed.pth", key="--inception (eval.inception_weights)")
    with pytest.raises(WeightsImportError, match=r"'torchvision' layout has 1000 classes, the file's fc.weight has "
                                                 r"1008; this looks like the 'fid' layout"):
        load_inception(path, "torchvision")
    with pytest.raises(MissingWeightsError, match="eval.inception_weights is not set"):
        load_inception(None, key="eval.inception_weights")
    with pytest.raises(FileNotFoundError, match=r"inception_weights: weight file not found: .*nope"):
        load_inception(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="inception layout"):
        InceptionFeatures("tf2")
    assert set(LAYOUTS) == {"fid", "torchvision"}


def test_torchvision_layout_matches_torchvision(tmp_path):
    """torchvision's inception_v3 state dict (AuxLogits included) loads, and the features are those of
    torchvision's own forward (at its avgpool) on the same [-1, 1] 299x299 input."""
    torch.manual_seed(3)
    tv = _randomise_bn(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)).eval()
    torch.save(tv.state_dict(), tmp_path / "inception_v3_google.pth")
    net = load_inception(tmp_path / "inception_v3_google.pth", "torchvision")
    pooled = {}
    tv.avgpool.register_forward_hook(lambda m, i, o: pooled.setdefault("f", o.flatten(1)))
    x = _images(seed=4)
    with torch.no_grad():
        ours = net(x)
        tv(net._prepare(x))
    torch.testing.assert_close(ours, pooled["f"])
    with pytest.raises(ValueError, match=r"expected an image batch \(N, 3, H, W\).*got \(1, 2, 40, 56\)"):
        net(x[:, :2])


def test_matches_torch_fidelity(fid_file):
    """Against torch-fidelity's FID Inception when it is installed (not a dependency), same weight file."""
    tf = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    src, path = fid_file
    ref = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    x = _images(2, 37, 53, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(load_inception(path)(x), ref(x)[0], rtol=1e-5, atol=1e-6)
