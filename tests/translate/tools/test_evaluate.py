import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from datamodules.io import BadImageError, DataError
from nets.perceptual import LPIPS, MissingWeightsError, lpips_head_state_dict, torchvision_backbone_state_dict
from translate import cli
from translate.tools import evaluate as ev
from translate.train.config import ConfigError


class TinyFeatures(nn.Module):
    """A small random feature extractor with the interface of nets.inception.InceptionFeatures."""

    num_features = 16

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images):
        x = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images * 2 - 1
        return 10 * self.net(x.expand(-1, 3, -1, -1))  # features of order 1, like Inception's


def _write_set(folder, n, seed, bright=0, size=32, names=None):
    """n smooth random RGB images (low-frequency noise, upsampled) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        low = rng.integers(0, 256 - bright, (4, 4, 3)).astype(np.uint8) + bright
        img = Image.fromarray(low).resize((size, size), Image.BILINEAR)
        img.save(folder / f"{(names or {}).get(i, f'{i:03d}')}.png")
    return folder


def _noisy_copy(src, dst, seed, amount=25):
    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for f in sorted(src.iterdir()):
        a = np.asarray(Image.open(f)).astype(int)
        Image.fromarray(np.clip(a + rng.integers(-amount, amount + 1, a.shape), 0, 255).astype(np.uint8)).save(
            dst / f.name)
    return dst


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    ref = _write_set(root / "ref", 12, seed=0)
    return {"ref": ref, "pred": _noisy_copy(ref, root / "pred", seed=1),
            "other": _write_set(root / "other", 12, seed=5, bright=120, names={i: f"x{i}" for i in range(12)}),
            "root": root}


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    torch.manual_seed(0)
    lpips = LPIPS("alex")
    for h in lpips.heads:
        h.weight.data.abs_()
    root = tmp_path_factory.mktemp("lpips")
    torch.save(torchvision_backbone_state_dict(lpips), root / "alexnet.pth")
    torch.save(lpips_head_state_dict(lpips), root / "alex.pth")
    return lpips, root / "alexnet.pth", root / "alex.pth"


def _cfg(**kw):
    return ev.EvalConfig(**{"batch_size": 5, **kw})


def _load(folder):
    return [torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1).float()[None] / 255
            for f in sorted(folder.iterdir())]


def test_fid_kid_of_a_set_with_itself_are_about_zero(sets):
    same = ev.evaluate_folders(sets["ref"], sets["ref"], _cfg(), metrics=["fid", "kid"], extractor=TinyFeatures())
    diff = ev.evaluate_folders(sets["ref"], sets["other"], _cfg(), metrics=["fid", "kid"], extractor=TinyFeatures())
    near = ev.evaluate_folders(sets["pred"], sets["ref"], _cfg(), metrics=["fid", "kid"], extractor=TinyFeatures())
    assert diff["pairs"] == 0 and same["pairs"] == 12
    assert diff["metrics"]["fid"] > 1e-3
    assert abs(same["metrics"]["fid"]) < 1e-6 * diff["metrics"]["fid"] + 1e-9
    # KID's unbiased estimator on two identical samples is slightly negative (-2 (k(x, x) - k(x, y)) / m on
    # average): near zero next to a different set, not exactly zero
    assert diff["metrics"]["kid"] > 0
    assert abs(same["metrics"]["kid"]) < 0.15 * diff["metrics"]["kid"]
    assert same["metrics"]["fid"] < near["metrics"]["fid"] < diff["metrics"]["fid"]
    # the subset size was lowered to the set size, with a note
    assert diff["settings"]["kid_subset_size"] == 12
    assert any("kid: subset size 12" in n for n in diff["notes"])


def test_fid_kid_equal_torchmetrics_on_the_same_features(sets):
    """Our one-pass feature sharing gives what torchmetrics gives with the extractor plugged in directly."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    res = ev.evaluate_folders(sets["pred"], sets["other"], _cfg(kid_subset_size=6, kid_subsets=20),
                              metrics=["fid", "kid"], extractor=TinyFeatures())
    fid = FrechetInceptionDistance(feature=TinyFeatures())
    with pytest.warns(UserWarning, match="will save all extracted features"):
        kid = KernelInceptionDistance(feature=TinyFeatures(), subsets=20, subset_size=6)
    for folder, real in ((sets["pred"], False), (sets["other"], True)):
        imgs = torch.cat([(x * 255).round().to(torch.uint8) for x in _load(folder)])
        fid.update(imgs, real=real)
        kid.update(imgs, real=real)
    torch.manual_seed(0)
    kid_mean, kid_std = kid.compute()
    assert res["metrics"]["fid"] == pytest.approx(float(fid.compute()), rel=1e-5)
    assert res["metrics"]["kid"] == pytest.approx(float(kid_mean), rel=1e-5)
    assert res["metrics"]["kid_std"] == pytest.approx(float(kid_std), rel=1e-5, abs=1e-9)


def test_pair_metrics_agree_with_torchmetrics_and_lpips(sets, lpips_files):
    lpips = lpips_files[0]
    res = ev.evaluate_folders(sets["pred"], sets["ref"], _cfg(), metrics=["psnr", "ssim", "l1", "lpips"],
                              lpips=lpips)
    preds, refs = _load(sets["pred"]), _load(sets["ref"])
    psnr = np.mean([float(peak_signal_noise_ratio(p, r, data_range=1.0)) for p, r in zip(preds, refs)])
    ssim = np.mean([float(structural_similarity_index_measure(p, r, data_range=1.0)) for p, r in zip(preds, refs)])
    l1 = np.mean([float((p - r).abs().mean()) for p, r in zip(preds, refs)])
    with torch.no_grad():
        lp = float(lpips(torch.cat(preds) * 2 - 1, torch.cat(refs) * 2 - 1).mean())
    m = res["metrics"]
    assert m["psnr"] == pytest.approx(psnr, rel=1e-5) and 15 < m["psnr"] < 40
    assert m["ssim"] == pytest.approx(ssim, rel=1e-5)
    assert m["l1"] == pytest.approx(l1, rel=1e-5)
    assert m["lpips"] == pytest.approx(lp, rel=1e-4) and m["lpips"] > 0
    assert res["pairs"] == 12 and res["skipped"] == {}


def test_skips_without_weights_and_errors_when_asked(sets):
    res = ev.evaluate_folders(sets["pred"], sets["ref"], _cfg())
    assert set(res["metrics"]) == {"psnr", "ssim", "l1"}
    assert "--inception PATH (eval.inception_weights)" in res["skipped"]["fid"]
    assert "--lpips-backbone PATH (eval.lpips_backbone)" in res["skipped"]["lpips"]
    table = ev.format_table(res)
    assert "skipped fid: needs --inception PATH" in table and "psnr" in table
    with pytest.raises(MissingWeightsError, match=r"kid needs --inception PATH \(eval\.inception_weights\)"):
        ev.evaluate_folders(sets["pred"], sets["ref"], _cfg(), metrics=["kid"])
    with pytest.raises(MissingWeightsError, match=r"lpips needs --lpips-weights PATH \(eval\.lpips_weights\)"):
        ev.evaluate_folders(sets["pred"], sets["ref"], _cfg(lpips_backbone="x.pth"), metrics=["lpips"])
    with pytest.raises(FileNotFoundError, match=r"--inception \(eval\.inception_weights\): weight file not found"):
        ev.evaluate_folders(sets["pred"], sets["ref"], _cfg(inception_weights="/nonexistent/w.pth"))


def test_unpaired_folders_give_set_metrics_only(sets):
    res = ev.evaluate_folders(sets["pred"], sets["other"], _cfg(), extractor=TinyFeatures())
    assert set(res["metrics"]) == {"fid", "kid", "kid_std"}
    assert "12 only in --pred (000, 001" in res["skipped"]["psnr"]
    with pytest.raises(DataError, match=r"psnr needs pairs, .*12 only in --ref \(x0, x1"):
        ev.evaluate_folders(sets["pred"], sets["other"], _cfg(), metrics=["psnr"])


def test_bad_inputs_are_named(sets, tmp_path):
    one = _write_set(tmp_path / "one", 1, seed=3)
    with pytest.raises(DataError, match="FID/KID need at least 2 images per folder; --pred has 1"):
        ev.evaluate_folders(one, sets["ref"], _cfg(), metrics=["fid"], extractor=TinyFeatures())
    big = _write_set(tmp_path / "big", 12, seed=0, size=48)
    with pytest.raises(DataError, match=r"000\.png is 48x48 but .*000\.png is 32x32: pass --size N"):
        ev.evaluate_folders(big, sets["ref"], _cfg(), metrics=["psnr"])
    res = ev.evaluate_folders(big, sets["ref"], _cfg(size=32), metrics=["psnr"])
    assert res["metrics"]["psnr"] > 20  # the same smooth images, resized
    broken = _noisy_copy(sets["ref"], tmp_path / "broken", seed=2)
    (broken / "003.png").write_bytes(b"not a png")
    with pytest.raises(BadImageError, match=r"broken/003\.png: unreadable image"):
        ev.evaluate_folders(broken, sets["ref"], _cfg(), metrics=["psnr"])
    dup = _noisy_copy(sets["ref"], tmp_path / "dup", seed=2)
    Image.open(dup / "000.png").save(dup / "000.jpg")
    with pytest.raises(DataError, match="two images with the stem '000'"):
        ev.evaluate_folders(dup, sets["ref"], _cfg())
    with pytest.raises(ValueError, match="--metrics: expected a comma-separated list of"):
        ev.parse_metrics("fid,is")


def test_gray_images(sets, tmp_path):
    gray = tmp_path / "gray"
    gray.mkdir()
    for f in sorted(sets["ref"].iterdir()):
        Image.open(f).convert("L").save(gray / f.name)
    res = ev.evaluate_folders(gray, sets["ref"], _cfg(channels=1), metrics=["psnr", "fid"], extractor=TinyFeatures())
    assert res["metrics"]["psnr"] > 40  # gray vs the luma of the reference
    assert res["metrics"]["fid"] < 1e-6


def test_config_file(tmp_path, lpips_files):
    _, backbone, heads = lpips_files
    f = tmp_path / "eval.yaml"
    f.write_text(f"eval:\n  lpips_backbone: {backbone}\n  lpips_weights: {heads}\n  size: 32\n"
                 "data:\n  root: ignored\n")
    cfg = ev.load_eval_config([f], size=64, batch_size=None)
    assert (cfg.lpips_backbone, cfg.lpips_weights, cfg.size, cfg.batch_size) == (str(backbone), str(heads), 64, 16)
    f.write_text("eval:\n  inception_weight: x.pth\n")
    with pytest.raises(ConfigError, match=rf"{f}: key 'eval.inception_weight'"):
        ev.load_eval_config([f])
    with pytest.raises(ConfigError, match=r"key 'eval.inception_layout' \(--inception-layout\): expected one of"):
        ev.load_eval_config([], inception_layout="tf")
    # a flag's value is named by the flag too; a key only a config sets, by the key alone
    for flag, key, value in (("--size", "size", 0), ("--batch-size", "batch_size", 0),
                             ("--kid-subset-size", "kid_subset_size", -1)):
        with pytest.raises(ConfigError, match=rf"key 'eval.{key}' \({flag}\): expected an integer >= 1"):
            ev.load_eval_config([], **{key: value})
    f.write_text("eval:\n  kid_subsets: 0\n")
    with pytest.raises(ConfigError, match=r"key 'eval.kid_subsets': expected an integer >= 1, got 0"):
        ev.load_eval_config([f])
    f.write_text("model:\n  lambda_l1: 1\n")
    with pytest.raises(ConfigError, match="expected an 'eval:' section"):
        ev.load_eval_config([f])


def test_cli_end_to_end(sets, lpips_files, tmp_path, capsys, monkeypatch):
    _, backbone, heads = lpips_files
    out = tmp_path / "metrics.json"
    rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["ref"]), "--lpips-backbone",
                   str(backbone), "--lpips-heads", str(heads), "--batch-size", "4", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    result = json.loads(out.read_text())
    assert set(result["metrics"]) == {"psnr", "ssim", "l1", "lpips"} and result["pairs"] == 12
    assert "lpips" in printed and "skipped fid: needs --inception PATH (eval.inception_weights)" in printed

    # --inception goes through load_inception; a tiny extractor stands in for Inception-v3 here
    fake = tmp_path / "inception.pth"
    fake.write_bytes(b"")
    seen = {}

    def fake_load(path, layout, key):
        seen.update(path=path, layout=layout, key=key)
        return TinyFeatures()

    monkeypatch.setattr(ev, "load_inception", fake_load)
    rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["other"]), "--inception", str(fake),
                   "--metrics", "fid,kid", "--kid-subset-size", "5"])
    printed = capsys.readouterr().out
    assert rc == 0 and seen == {"path": str(fake), "layout": "fid", "key": "--inception (eval.inception_weights)"}
    assert "fid" in printed and "kid" in printed and "12 pred vs 12 ref images" in printed


def test_cli_missing_weights_names_the_option(sets, capsys):
    rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["ref"]), "--metrics", "psnr,fid"])
    err = capsys.readouterr().err
    assert rc == 2 and "fid needs --inception PATH (eval.inception_weights)" in err
    rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["root"] / "missing")])
    assert rc == 2 and "image folder not found" in capsys.readouterr().err


def test_cli_fails_when_no_metric_could_be_computed(sets, capsys, tmp_path):
    """A prediction missing (e.g. skipped by predict) leaves no pair metric: a non-zero exit, not an empty table."""
    import shutil

    pred = shutil.copytree(sets["pred"], tmp_path / "pred")
    sorted(pred.iterdir())[0].unlink()
    rc = cli.main(["evaluate", "--pred", str(pred), "--ref", str(sets["ref"])])  # the default: what can be computed
    captured = capsys.readouterr()
    assert rc == 1 and "no metric could be computed" in captured.err and "skipped psnr" in captured.out


def test_pair_metrics_per_image_and_spread(sets, tmp_path):
    """pSp's calc_losses_on_images writes a score per image and mean +- std; so do we (JSON and table)."""
    res = ev.evaluate_folders(sets["pred"], sets["ref"], _cfg(), metrics=["psnr", "l1"])
    preds, refs = _load(sets["pred"]), _load(sets["ref"])
    psnr = [float(peak_signal_noise_ratio(p, r, data_range=1.0)) for p, r in zip(preds, refs)]
    per = res["per_image"]
    assert list(per) == [f"{i:03d}" for i in range(12)] and set(per["000"]) == {"psnr", "l1"}
    np.testing.assert_allclose([per[s]["psnr"] for s in per], psnr, rtol=1e-5)
    assert res["std"]["psnr"] == pytest.approx(np.std(psnr), rel=1e-4) and res["std"]["psnr"] > 0
    assert res["metrics"]["psnr"] == pytest.approx(np.mean(psnr), rel=1e-5)
    assert f"{np.mean(psnr):.4f} +- {np.std(psnr):.4f} dB" in ev.format_table(res)
    out = ev.write_json(res, tmp_path / "m.json")
    assert json.loads(out.read_text())["per_image"]["003"]["psnr"] == pytest.approx(psnr[3], rel=1e-5)
    unpaired = ev.evaluate_folders(sets["pred"], sets["other"], _cfg(), extractor=TinyFeatures())
    assert unpaired["per_image"] == {} and unpaired["std"] == {}


@pytest.fixture(scope="module")
def face_nets(tmp_path_factory):
    """Small random face-recognition nets in the two published layouts: IR-SE50 with an affine embedding norm
    (model_ir_se50.pth) and plain IR-101 without (CurricularFace_Backbone.pth)."""
    from nets.encoders import ArcFace

    root, files = tmp_path_factory.mktemp("faces"), {}
    for name, kw in (("ir_se50", {}), ("curricular", {"num_layers": 100, "mode": "ir", "affine": False})):
        torch.manual_seed(1)
        net = ArcFace(channels=(8, 8, 16, 16), embedding_dim=32, **kw).eval()
        sd = {k: v + torch.rand_like(v) if k.endswith("running_var") else v for k, v in net.state_dict().items()}
        files[name] = root / f"{name}.pth"
        torch.save(sd, files[name])
    return files


@pytest.mark.parametrize("layout", ["ir_se50", "curricular"])
def test_identity_similarity(sets, face_nets, layout):
    from nets.encoders import load_arcface
    from nets.similarity import IDLoss

    res = ev.evaluate_folders(sets["pred"], sets["ref"], _cfg(id_weights=str(face_nets[layout])), metrics=["id"])
    net = IDLoss(load_arcface(face_nets[layout]))
    with torch.no_grad():
        f0, f1 = (net.features(torch.cat(_load(sets[k])) * 2 - 1) for k in ("pred", "ref"))
    cos = (f0 * f1).sum(dim=1).numpy()
    np.testing.assert_allclose([res["per_image"][f"{i:03d}"]["id"] for i in range(12)], cos, atol=1e-5)
    assert res["metrics"]["id"] == pytest.approx(cos.mean(), abs=1e-5) and 0 < cos.mean() < 0.9999
    same = ev.evaluate_folders(sets["ref"], sets["ref"], _cfg(id_weights=str(face_nets[layout])), metrics=["id"])
    assert same["metrics"]["id"] == pytest.approx(1.0, abs=1e-5)
    assert any(n.startswith("id: images down to 32 px") for n in res["notes"])  # too small to mean much


def test_identity_similarity_needs_its_weights(sets, tmp_path, capsys):
    res = ev.evaluate_folders(sets["pred"], sets["ref"], _cfg())
    assert res["skipped"]["id"].startswith("needs --id-weights PATH (eval.id_weights)")
    with pytest.raises(MissingWeightsError, match=r"id needs --id-weights PATH \(eval\.id_weights\)"):
        ev.evaluate_folders(sets["pred"], sets["ref"], _cfg(), metrics=["id"])
    with pytest.raises(FileNotFoundError, match=r"--id-weights \(eval\.id_weights\): weight file not found"):
        ev.evaluate_folders(sets["pred"], sets["ref"], _cfg(id_weights=str(tmp_path / "nope.pth")))
    torch.save({"encoder.input_layer.0.weight": torch.zeros(1)}, tmp_path / "psp.pt")
    rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["ref"]), "--id-weights",
                   str(tmp_path / "psp.pt")])
    assert rc == 2 and "--id-weights (eval.id_weights): " in capsys.readouterr().err


def test_cli_identity_similarity(sets, face_nets, capsys):
    rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["ref"]), "--metrics", "psnr,id",
                   "--id-weights", str(face_nets["ir_se50"])])
    printed = capsys.readouterr().out
    assert rc == 0 and any(line.startswith("id ") and "+-" in line and "12 pairs" in line
                           for line in printed.splitlines())


def test_cli_refuses_bad_out_device_and_config_before_scoring(sets, tmp_path, capsys):
    """--out never replaces a scored image nor lands in a folder; a malformed config or a missing GPU is named."""
    target = sets["ref"] / "000.png"
    before = target.read_bytes()
    rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["ref"]), "--out", str(target)])
    assert rc == 2 and f"refusing to write into the --ref folder {sets['ref']}" in capsys.readouterr().err
    assert target.read_bytes() == before
    rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["ref"]), "--out", str(tmp_path)])
    assert rc == 2 and "is a folder; give the JSON file to write" in capsys.readouterr().err
    bad = tmp_path / "eval.yaml"
    bad.write_text("eval:\n size: 3\n  x: 1\n")
    rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["ref"]), "-c", str(bad)])
    assert rc == 2 and f"{bad}: not a valid YAML file" in capsys.readouterr().err
    if not torch.cuda.is_available():
        rc = cli.main(["evaluate", "--pred", str(sets["pred"]), "--ref", str(sets["ref"]), "--device", "cuda:5"])
        assert rc == 2 and "key 'eval.device' (--device): device cuda:5: no CUDA GPU is available here" in capsys.readouterr().err
    rc = cli.main(["evaluate", "--pred", str(target), "--ref", str(sets["ref"])])
    assert rc == 2 and f"expected a folder of images, got a file: {target}" in capsys.readouterr().err
