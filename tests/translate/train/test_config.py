import pytest

from translate.train.config import ConfigError, RunConfig, load_config, to_yaml
from translate.methods.pix2pix import Pix2PixConfig


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_are_reference_pix2pix():
    cfg = load_config()
    assert isinstance(cfg, RunConfig) and isinstance(cfg.model, Pix2PixConfig)
    assert (cfg.model.lambda_l1, cfg.model.lr, cfg.model.beta1, cfg.model.netG) == (100.0, 2e-4, 0.5, "unet_256")
    assert cfg.run_dir == "runs/pix2pix"  # interpolation resolved


def test_files_stack_and_overrides_win(tmp_path):
    a = write(tmp_path, "a.yaml", "model:\n  ngf: 16\n  ndf: 8\ndata:\n  batch_size: 2\n")
    b = write(tmp_path, "b.yaml", "model:\n  ngf: 32\n")
    cfg = load_config([a, b], ["data.batch_size=7", "trainer.max_epochs=3"])
    assert cfg.model.ngf == 32 and cfg.model.ndf == 8
    assert cfg.data.batch_size == 7 and cfg.trainer.max_epochs == 3


@pytest.mark.parametrize("text,key", [
    ("model:\n  lambda_L11: 3\n", "model.lambda_L11"),
    ("data:\n  bach_size: 3\n", "data.bach_size"),
    ("trainer:\n  max_epochs: many\n", "trainer.max_epochs"),
    ("model:\n  ngf: [1, 2]\n", "model.ngf"),
])
def test_bad_key_names_key_and_file(tmp_path, text, key):
    f = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config([f])
    assert key in str(e.value) and str(f) in str(e.value)


def test_bad_override_names_command_line():
    with pytest.raises(ConfigError, match="command line.*model.ngff"):
        load_config([], ["model.ngff=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config([], ["model.ngf"])


def test_unknown_method_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="method"):
        load_config([], ["method=pix3pix"])
    with pytest.raises(ConfigError, match="not found"):
        load_config([tmp_path / "nope.yaml"])


def test_mandatory_value_must_be_set():
    with pytest.raises(ConfigError, match="data.root"):
        load_config(["configs/pix2pix/facades.yaml"])
    cfg = load_config(["configs/pix2pix/facades.yaml"], ["data.root=/x"])
    assert cfg.data.root == "/x" and cfg.data.direction == "BtoA"


def test_round_trip_through_plain_dict():
    cfg = load_config(["configs/pix2pix/demo.yaml"])
    from translate.train.config import to_dict

    again = load_config([], ["model.ngf=8"], base=to_dict(cfg))
    assert again.model.num_downs == cfg.model.num_downs and again.model.ngf == 8
    assert "num_downs: 6" in to_yaml(cfg)


def test_every_shipped_config_loads():
    from pathlib import Path

    configs = sorted(Path("configs").rglob("*.yaml"))
    assert configs
    # what a user must give for the paper configs (files of their own); `???` in a config makes it required
    required = {"psp": ["model.prior=/w/ffhq.pt", "model.encoder_weights=/w/ir_se50.pth",
                        "model.lpips_backbone=/w/alexnet.pth", "model.lpips_weights=/w/alex.pth"]}
    for path in configs:
        cfg = load_config([path], ["data.root=/data", *required.get(path.parent.name, [])])
        assert cfg.method == {"prior": "stylegan2"}.get(path.parent.name, path.parent.name)  # configs/<method>/
    with pytest.raises(ConfigError, match=r"keys 'model.prior', 'model.encoder_weights', 'model.lpips_backbone', "
                                          r"'model.lpips_weights' must be set \(required by configs/psp/_base.yaml\)"):
        load_config([Path("configs/psp/super_resolution.yaml")], ["data.root=/data"])  # all of them, in one go
    with pytest.raises(ConfigError, match=r"key 'model.lpips_weights' must be set \(required by configs/psp/_base"):
        load_config([Path("configs/psp/super_resolution.yaml")], ["data.root=/data", *required["psp"][:3]])
    # a misspelled key or a wrong type is named before the required keys that are still missing
    with pytest.raises(ConfigError, match=r"key 'model.priorr': Key 'priorr' not in 'PSPConfig'"):
        load_config([Path("configs/psp/super_resolution.yaml")], ["model.priorr=/w/ffhq.pt"])
    with pytest.raises(ConfigError, match=r"key 'data.batch_size': Value 'abc'"):
        load_config([Path("configs/psp/super_resolution.yaml")], ["data.batch_size=abc"])


def test_include_merges_files_first_and_names_problems(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  ngf: 8\n  ndf: 8\ndata:\n  batch_size: 3\n")
    (tmp_path / "task.yaml").write_text("include: base.yaml\nmodel:\n  ngf: 16\n")
    cfg = load_config([tmp_path / "task.yaml"], ["model.ndf=4"])
    assert (cfg.model.ngf, cfg.model.ndf, cfg.data.batch_size) == (16, 4, 3)  # file over include, overrides last
    (tmp_path / "loop.yaml").write_text("include: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config([tmp_path / "loop.yaml"])
    (tmp_path / "missing.yaml").write_text("include: nope.yaml\n")
    with pytest.raises(ConfigError, match=r"not found: .*nope.yaml \(included by .*missing.yaml\)"):
        load_config([tmp_path / "missing.yaml"])
    (tmp_path / "typo.yaml").write_text("model:\n  ngff: 3\n")
    (tmp_path / "uses.yaml").write_text("include: typo.yaml\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: key 'model.ngff'"):
        load_config([tmp_path / "uses.yaml"])


def test_installed_command_is_declared():
    from importlib.metadata import PackageNotFoundError, distribution, entry_points

    try:
        distribution("translate-kit")
    except PackageNotFoundError:
        pytest.skip("the project is not installed in this environment (make test installs it)")
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "translate"]
    assert ep.value == "translate.cli:main"


def test_psp_paper_configs_augment_as_psp():
    """pSp mirrors training images for inversion and frontalization only (never label maps, whose left/right classes
    would swap meaning), drops the last partial batch, and makes SR inputs with its own filters."""
    from pathlib import Path

    required = ["data.root=/data", "model.prior=/w/ffhq.pt", "model.encoder_weights=/w/ir_se50.pth",
                "model.lpips_backbone=/w/alexnet.pth", "model.lpips_weights=/w/alex.pth"]
    flips = {}
    for task in ("encode", "frontalization", "domain_guided", "super_resolution", "sketch_to_face", "seg_to_face"):
        cfg = load_config([Path(f"configs/psp/{task}.yaml")], required)
        flips[task] = cfg.data.flip
        assert cfg.data.drop_last, task
    assert flips == {"encode": True, "frontalization": True, "domain_guided": True, "super_resolution": False,
                     "sketch_to_face": False, "seg_to_face": False}
    sr = load_config([Path("configs/psp/super_resolution.yaml")], required).data.degradation
    assert (sr.name, sr.factors) == ("downsample_psp", [1, 2, 4, 8, 16, 32])


def test_a_section_given_as_a_value_names_the_key_and_file(tmp_path):
    for text, key in (("model: 5\n", "model"), ("data: [1, 2]\n", "data"), ("trainer: fast\n", "trainer")):
        path = tmp_path / f"{key}.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=rf"{key}.yaml: key '{key}' must be a section of options"):
            load_config([path])
    with pytest.raises(ConfigError, match=r"command line: key 'model' must be a section"):
        load_config([], ["model=5"])


def test_a_scalar_for_a_list_option_says_a_list_is_expected(tmp_path):
    with pytest.raises(ConfigError, match=r"command line: key 'data.degradation.factors': expected a list, e.g. \[4\]"):
        load_config([], ["data.degradation.factors=4"])
    f = tmp_path / "sr.yaml"
    f.write_text("data:\n  degradation:\n    factors: 4\n")
    with pytest.raises(ConfigError, match=rf"{f}: key 'data.degradation.factors': expected a list, e.g. \[4\], got 4"):
        load_config([f])


def test_max_epochs_follows_the_lr_schedule_unless_set(tmp_path):
    """A run trains exactly over its LR schedule unless trainer.max_epochs is set; a set value that differs is
    warned about naming both keys (the schedule holds at 0 past its end)."""
    from translate.train.config import schedule_mismatch

    cfg = load_config([], ["model.n_epochs=10", "model.n_epochs_decay=6"])
    assert cfg.trainer.max_epochs == 16 and schedule_mismatch(cfg) is None
    assert load_config([], ["method=cyclegan", "model.n_epochs=3", "model.n_epochs_decay=2"]).trainer.max_epochs == 5
    assert load_config([], ["model.lr_policy=cosine", "model.n_epochs=7"]).trainer.max_epochs == 7
    assert load_config([], ["model.lr_policy=step"]).trainer.max_epochs == RunConfig().trainer.max_epochs

    (tmp_path / "run.yaml").write_text("model:\n  n_epochs: 10\n  n_epochs_decay: 6\ntrainer:\n  max_epochs: 16\n")
    longer = load_config([tmp_path / "run.yaml"], ["trainer.max_epochs=20"])
    assert longer.trainer.max_epochs == 20
    assert schedule_mismatch(longer) == (
        "trainer.max_epochs=20 runs past the LR schedule's 16 epochs (model.n_epochs=10 + model.n_epochs_decay=6): "
        "epochs 17-20 train at learning rate 0; set one to match the other")
    shorter = load_config([tmp_path / "run.yaml"], ["trainer.max_epochs=4"])
    assert "trainer.max_epochs=4 ends before the LR schedule's 16 epochs" in schedule_mismatch(shorter)
    assert schedule_mismatch(load_config([], ["method=psp", "model.prior=x", "trainer.max_epochs=3"])) is None
