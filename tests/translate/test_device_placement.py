"""Device placement on a simulated CUDA device: every method's steps create no tensor on the CPU.

PyTorch's FakeTensorMode runs tensors of device "cuda" on this CPU-only machine (shapes, dtypes and devices, no
values), and an op that mixes a CUDA and a CPU tensor raises FakeTensorDeviceMismatchError. On top of it,
`CpuTensorWatch` records every op whose result is a CPU tensor, so that a `torch.tensor(...)` without `device=`, a
`.cpu()` or a numpy round trip fails even where nothing mixes it with a CUDA tensor (a CPU scalar would pass the
mismatch check, and cost a host-to-device copy per step on a GPU).

What runs, for every method of METHODS, with the module built on the CPU and moved with `module.to("cuda")`, as
Lightning does: the training step's forward parts as the method writes them (the optimizers, `manual_backward` and
logging are stubbed; `torch.autograd.grad`, whose engine needs a real CUDA context, returns zeros of the right device,
so the regularisers' forward terms run), the EMA update and the image pools; a validation epoch with its metrics; the
pSp forward with its frozen prior and loss networks, and the inversion's; evaluate's feature extraction; a bundle's
eager inference. The same for the options merged later: StyleGAN3-T/-R training steps and pSp into a StyleGAN3 prior
(VARIANTS), e4e's training step with its latent discriminator, R1 and code pools (VARIANTS), an edit along a direction,
each degradation with the inversion through it, a StyleGAN3 render with an input transform, and predict's / the web
app's translate_files. Backward itself is out of reach this way: the autograd engine asks the CUDA driver for a context
("hasPrimaryContext expects a valid device index").
"""
from __future__ import annotations

import contextlib
import gc
import random
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Iterator, List, Optional

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from pytorch_lightning.trainer.states import TrainerFn

from priors.ops import _backend
from translate.methods.registry import METHODS
from translate.train.config import load_config
from translate.train.runner import build_module

ROOT = Path(__file__).resolve().parents[2]
CUDA = torch.device("cuda", 0)
SIZE = 32


# Where the host is the point: image grids for the loggers and image files (images.py); the seeds' latents, drawn
# from per-seed CPU generators so that a seed gives the same image on every device (z_for, once per grid).
HOST_BOUNDARY = ("translate/methods/images.py:", "priors/generate.py:z_for:", "priors/generate.py:<listcomp>:")


class CpuTensorWatch(TorchDispatchMode):
    """Records each op that returns a CPU tensor, with the project's frame that called it. A 0-dim CPU tensor made
    inside a library (torchmetrics' `torch.tensor(base)`) is allowed: PyTorch moves such scalars itself. The CPU
    tensor that `torch.tensor(data, device=...)` builds first (aten.lift_fresh) counts only if it is not copied to
    the device at once."""

    _paused = False

    def __init__(self, host: tuple = ()) -> None:
        super().__init__()
        self.host = HOST_BOUNDARY + tuple(host)  # the project frames whose CPU tensors are on the host by design
        self.found: List[str] = []
        self.fresh: Dict[int, tuple] = {}  # id -> (tensor, finding) of lift_fresh results not yet copied away

    @classmethod
    @contextlib.contextmanager
    def paused(cls) -> Iterator[None]:
        before, cls._paused = cls._paused, True
        try:
            yield
        finally:
            cls._paused = before

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if CpuTensorWatch._paused:
            return out
        if func is torch.ops.aten._to_copy.default and id(args[0]) in self.fresh and out.device.type != "cpu":
            del self.fresh[id(args[0])]
            return out
        cpu = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.device.type == "cpu"]
        if cpu:
            where, ours = _caller()
            if (ours or any(t.ndim > 0 for t in cpu)) and not where.startswith(self.host):
                finding = f"{func} made a CPU tensor at {where}"
                if func is torch.ops.aten.lift_fresh.default:
                    self.fresh[id(out)] = (out, finding)
                else:
                    self.found.append(finding)
        return out

    def __exit__(self, *exc):
        self.found += [finding for _, finding in self.fresh.values()]
        return super().__exit__(*exc)


PROJECT_PACKAGES = ("safeio", "priors", "nets", "datamodules", "translate")  # not a .venv inside the checkout


def _project_path(filename: str, packages=PROJECT_PACKAGES) -> Optional[str]:
    """The path of a frame's file relative to the checkout when it is in one of `packages`, else None."""
    path = Path(filename)
    if ROOT not in path.parents:
        return None
    rel = path.relative_to(ROOT)
    return str(rel) if rel.parts[0] in packages else None


def _caller():
    """(the innermost frame of the project's packages, or of tests/ if none; whether the innermost frame outside
    torch is the project's or a test's, not a library's)."""
    stack = list(reversed(traceback.extract_stack()[:-3]))
    library = next((f for f in stack if "/torch/" not in f.filename), None)
    ours = library is not None and _project_path(library.filename, PROJECT_PACKAGES + ("tests",)) is not None
    for packages in (PROJECT_PACKAGES, ("tests",)):
        for frame in stack:
            rel = _project_path(frame.filename, packages)
            if rel is not None:
                return f"{rel}:{frame.name}:{frame.lineno} ({frame.line})", ours
    return "(no project frame)", ours


def _zero_grads(outputs, inputs, *args, **kwargs):
    """torch.autograd.grad's stand-in: zeros like the inputs, on their device (the engine needs a real GPU)."""
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    return tuple(torch.zeros_like(t) for t in inputs)


def _host_draw(draw):
    """torch.rand(()) / torch.randint(..., ()) without a device: a number drawn on the host and read with float() /
    int() (CycleGAN's image pool, StyleGAN2's style-mixing cutoff), which a fake tensor cannot give. Drawn with
    Python's random here and handed back as a constant the fake mode can read (leaving the fake mode to draw with
    torch corrupted later tests)."""
    def wrapper(*args, **kwargs):
        size = kwargs.get("size", args[-1] if args else None)
        if kwargs.get("device") is not None or not isinstance(size, tuple) or size != ():
            return draw(*args, **kwargs)
        if draw is _RAND:
            number, dtype = random.random(), kwargs.get("dtype") or torch.float32
        else:
            low, high = (0, args[0]) if len(args) == 2 else args[:2]
            number, dtype = random.randrange(low, high), kwargs.get("dtype") or torch.long
        with CpuTensorWatch.paused():  # a host-side number by design
            return torch.tensor(number, dtype=dtype)
    return wrapper


_RAND = torch.rand


@contextlib.contextmanager
def simulated_cuda(monkeypatch) -> Iterator[FakeTensorMode]:
    """Fake CUDA tensors; the reference ops (the compiled ones would be built and loaded on first CUDA use)."""
    gc.collect()  # an earlier test's fake tensors (in reference cycles) must not be freed while this mode is active:
    FakeTensorMode.cache_clear()  # that, or their entries in the dispatch cache, aborted or misled a later test
    monkeypatch.setattr(torch.autograd, "grad", _zero_grads)
    monkeypatch.setattr(torch, "rand", _host_draw(torch.rand))
    monkeypatch.setattr(torch, "randint", _host_draw(torch.randint))
    with FakeTensorMode(allow_non_fake_inputs=True) as mode, _backend.force("ref"):
        yield mode


@contextlib.contextmanager
def no_cpu_tensors(what: str, host: tuple = ()) -> Iterator[None]:
    """Fails on an op of the block that returns a CPU tensor, unless its project frame starts with one of `host`."""
    watch = CpuTensorWatch(host)
    with watch:
        yield
    assert not watch.found, f"{what}: tensors created on the CPU:\n" + "\n".join(dict.fromkeys(watch.found))


class _Optimizer:
    param_groups: list = []

    def zero_grad(self, set_to_none=True):
        pass

    def step(self):
        pass


def _attach_stubs(module, logged: list):
    """What Lightning provides a LightningModule in a manual-optimisation step, without Lightning."""
    conf = module.configure_optimizers()  # an optimizer, a list of them, or (optimizers, schedulers)
    if isinstance(conf, torch.optim.Optimizer):
        n = 1
    else:
        n = len(conf[0]) if isinstance(conf, tuple) and isinstance(conf[0], list) else len(conf)
    stubs = [_Optimizer() for _ in range(n)]
    module.optimizers = lambda: stubs[0] if n == 1 else stubs  # as Lightning returns them
    module.toggled_optimizer = lambda opt: contextlib.nullcontext()
    module.manual_backward = lambda loss: logged.append(("backward", loss))
    module.log_dict = lambda values, **kw: logged.extend(values.items())
    module.log = lambda name, value, **kw: logged.append((name, value))
    module._trainer = SimpleNamespace(world_size=1, loggers=[], global_step=0,
                                      state=SimpleNamespace(fn=TrainerFn.FITTING))
    return module


def _batch(nc_a=3, nc_b=3, n=2):
    return {"A": torch.randn(n, nc_a, SIZE, SIZE, device=CUDA) * 0.5,
            "B": torch.randn(n, nc_b, SIZE, SIZE, device=CUDA) * 0.5,
            "A_path": [f"a{i}.png" for i in range(n)], "B_path": [f"b{i}.png" for i in range(n)]}


TINY = {
    "pix2pix": ["method=pix2pix", "model.netG=unet", "model.num_downs=5", "model.ngf=4", "model.ndf=4"],
    "cyclegan": ["method=cyclegan", "model.netG=resnet", "model.n_blocks=1", "model.ngf=4", "model.ndf=4",
                 "model.pool_size=3"],
    "stylegan2": ["method=stylegan2", "model.resolution=32", "model.z_dim=16", "model.w_dim=16",
                  "model.mapping_layers=2", "model.channel_base=256", "model.channel_max=16",
                  "model.mbstd_group_size=2", "model.d_reg_interval=1", "model.g_reg_interval=1",
                  "model.augment=[color,translation,cutout]", "model.val_samples=2"],
    "psp": ["method=psp", "model.channels=[4,8,8,16]", "model.input_size=32", "model.loss_size=32",
            "model.lpips_weights=random", "model.id_weights=random", "model.w_norm_lambda=0.1",
            "model.l2_lambda_crop=1", "model.adv_lambda=0.1", "model.d_channel_base=256",
            "model.d_channel_max=16", "model.d_mbstd_group_size=2", "model.feature_res=16"],
}
# other paths of a method, checked as well: ReStyle and style mixing (pSp above: a feature offset; MoCo's similarity
# is the identity loss's FeatureSimilarity with a ResNet-50, too slow to build here)
SG3 = ["model.pl_weight=0", "model.style_mixing_prob=0", "model.magnitude_ema_beta=0.5", "model.sg3_layers=3",
       "model.sg3_critical=1", "model.sg3_margin=2"]
VARIANTS = {
    "psp-restyle": ["method=psp", "model.channels=[4,8,8,16]", "model.input_size=32", "model.loss_size=32",
                    "model.lpips_lambda=0", "model.id_lambda=0", "model.restyle_iters=2", "model.latent_mask=[4,5,6,7]",
                    "model.mix_alpha=0.5"],
    # StyleGAN3 generators (filtered_lrelu's reference path, the input's transform buffer, the magnitude EMA)
    "stylegan3-t": [*TINY["stylegan2"], "model.architecture=stylegan3-t", "model.channel_base=64",
                    "model.channel_max=8", *SG3],
    "stylegan3-r": [*TINY["stylegan2"], "model.architecture=stylegan3-r", "model.channel_base=128",
                    "model.channel_max=16", *SG3],
    # pSp into a StyleGAN3-T prior (the sg3_prior fixture)
    "psp-sg3": ["method=psp", "model.channels=[4,8,8,16]", "model.input_size=32", "model.loss_size=32",
                "model.lpips_lambda=0", "model.id_lambda=0", "model.w_norm_lambda=0.1"],
    # e4e: progressive stages (stage 1 after the first step), the delta term, the latent discriminator with R1 and
    # its pools (full after the first step, so the second swaps codes)
    "psp-e4e": ["method=psp", "model.encoder_type=Encoder4Editing", "model.channels=[4,8,8,16]",
                "model.input_size=32", "model.loss_size=32", "model.lpips_lambda=0", "model.id_lambda=0",
                "model.progressive_start=1", "model.progressive_step_every=1", "model.w_discriminator_lambda=0.1",
                "model.use_w_pool=true", "model.w_pool_size=2", "model.d_reg_interval=1"],
}
TWO_STEPS = ("cyclegan", "psp-e4e")  # their second step meets full pools


def test_every_method_has_a_tiny_config():
    assert set(TINY) == set(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS) + sorted(VARIANTS))
def test_training_and_validation_steps_create_no_cpu_tensor(method, monkeypatch, request):
    overrides = TINY.get(method) or VARIANTS[method]
    if method.startswith("psp"):
        extra = [f"model.prior={request.getfixturevalue('sg3_prior' if method == 'psp-sg3' else 'prior')}"]
    else:
        extra = []
    module = build_module(load_config([], [*overrides, *extra])).train()
    if method.startswith("psp"):
        module.loss_nets  # built on the CPU, moved by on_fit_start as in a run
    logged: list = []
    _attach_stubs(module, logged)
    with simulated_cuda(monkeypatch):
        module.to(CUDA)
        module.on_fit_start()
        batch = _batch()
        with no_cpu_tensors(f"{method} training step"):
            for step in range(2 if method in TWO_STEPS else 1):
                module.training_step(batch, step)
        assert logged and all(v.device == CUDA for _, v in logged if isinstance(v, torch.Tensor))
        module.eval()
        with no_cpu_tensors(f"{method} validation"):
            module.on_validation_epoch_start()
            module.validation_step(batch, 0)
            module.on_validation_epoch_end()


def test_the_watch_catches_cpu_tensors_and_fake_mode_catches_mixing(monkeypatch):
    """The harness can fail: a CPU scalar multiplied into a CUDA tensor (legal on a GPU, a copy per call), a .cpu()
    round trip, and a CUDA tensor mixed with a CPU one."""
    with simulated_cuda(monkeypatch):
        x = torch.randn(2, 3, device=CUDA)
        for make in (lambda: x * torch.tensor(0.5), lambda: x.cpu().numpy, lambda: torch.zeros(3) + 1):
            with pytest.raises(AssertionError, match="made a CPU tensor at tests|no project frame"):
                with no_cpu_tensors("planted"):
                    make()
        with pytest.raises(FakeTensorDeviceMismatchError):
            x + torch.zeros(2, 3)
        assert not torch.cuda.is_available()  # nothing else believes in the fake device


@pytest.mark.parametrize("method", sorted(name for name in METHODS if name != "stylegan2") + ["psp-e4e", "psp-sg3"])
def test_a_bundles_eager_inference_creates_no_cpu_tensor(method, monkeypatch, request):
    """Translator.translate_batch over an EagerBackend holding the exported net (export_spec), as load_translator
    builds it with device="cuda" (StyleGAN2 exports a prior, not a translator: its G_ema runs in validation above)."""
    from translate.deploy.inference import EagerBackend, Translator

    extra = []
    if method.startswith("psp"):
        prior = request.getfixturevalue("sg3_prior" if method == "psp-sg3" else "prior")
        extra = [f"model.prior={prior}", "model.lpips_lambda=0", "model.id_lambda=0"]
    module = build_module(load_config([], [*(TINY.get(method) or VARIANTS[method]), *extra]))
    translators = []
    for direction in module.export_directions or (None,):
        net, meta = module.export_spec(direction) if direction else module.export_spec()
        run = EagerBackend(net.eval(), torch.device("cpu"))
        translators.append((Translator(meta, run), run))
    with simulated_cuda(monkeypatch):
        for translator, run in translators:
            run.net.to(CUDA)
            run.device = CUDA
            x = torch.rand(2, translator.input_nc, SIZE, SIZE - 4, device=CUDA) * 2 - 1  # padded (pSp: resized)
            with no_cpu_tensors(f"{method} bundle, eager"):
                y = translator.translate_batch(x)
            assert y.device == CUDA and y.shape[:2] == (2, translator.output_nc)


def _psp_net(prior):
    """A tiny pSp net (W+ codes only, no loss networks) in eval mode, on the CPU."""
    plain = [o for o in TINY["psp"] if not o.startswith("model.feature_res")]  # inversion works in W+ only
    return build_module(load_config([], [*plain, f"model.prior={prior}", "model.lpips_lambda=0",
                                         "model.id_lambda=0"])).net.eval()


@pytest.mark.parametrize("prior_fixture", ["prior", "sg3_prior"])
def test_psp_inversion_creates_no_cpu_tensor(monkeypatch, request, prior_fixture):
    """The inversion's encoder pass, its refinement objective (reconstruction + domain terms), the domain distance,
    interpolation and style mixing, with the frozen prior (StyleGAN2, and StyleGAN3-T)."""
    from translate.tools import invert

    net = _psp_net(request.getfixturevalue(prior_fixture))
    with simulated_cuda(monkeypatch):
        net.to(CUDA)
        img = torch.rand(2, 3, SIZE + 8, SIZE + 8, device=CUDA) * 2 - 1  # resized to the encoder's input
        with no_cpu_tensors("psp inversion"):
            w = invert.encode(net, img)
            terms = invert.refine_objective(net, w, invert.to_target(net, img), lambda_vgg=0.0, lambda_dom=0.5,
                                            lpips=None)
            invert.domain_distance(net, w)
            frames = invert.interpolate(net, w[0], w[1], steps=3)
            grid = invert.mix_grid(net, w[0], w[1], "coarse")
        assert {t.device for t in (w, terms["loss"], frames, grid)} == {CUDA}


def test_evaluates_feature_extraction_creates_no_cpu_tensor(monkeypatch):
    """The Inception features FID/KID use, on uint8 images moved to the device as evaluate does (the features then
    go to the CPU on purpose: torchmetrics accumulates them there)."""
    from nets.inception import InceptionFeatures
    from translate.tools.evaluate import EvalConfig, _SetMetrics

    sets = _SetMetrics(InceptionFeatures("fid"), EvalConfig(device="cuda"))
    with simulated_cuda(monkeypatch):
        sets.extractor.to(CUDA)
        images = torch.randint(0, 256, (2, 3, SIZE, SIZE), dtype=torch.uint8)  # as read from files
        with no_cpu_tensors("evaluate's feature extraction"):
            feats = sets.extractor(images.to(sets.device))
        assert feats.device == CUDA and feats.shape == (2, sets.num_features)


def test_an_edit_creates_no_cpu_tensor(monkeypatch, prior):
    """`translate edit`'s device part: a direction (loaded on the CPU, as from its file) applied to an inverted code
    on the device at several strengths, and the edited codes rendered."""
    from translate.tools import edit, invert
    from translate.tools.directions import Direction

    net = _psp_net(prior)
    n_latent, w_dim = net.latent_avg.shape
    vector = torch.nn.functional.normalize(torch.randn(w_dim), dim=0)
    d = Direction(vector, layers=[0, 1, 2], scale=0.7, method="sefa", prior="toy", n_latent=n_latent, how={})
    with simulated_cuda(monkeypatch):
        net.to(CUDA)
        img = torch.rand(1, 3, SIZE, SIZE, device=CUDA) * 2 - 1
        with no_cpu_tensors("an edit"):
            w = invert.encode(net, img)[0]
            edits = edit.render_edits(net, w, d, [-1.0, 0.0, 2.0])
            edits_on_layers = edit.render_edits(net, w, d, [1.0], layers=[3, 4])
        assert edits.device == CUDA and edits.shape == (3, 3, SIZE, SIZE) and edits_on_layers.shape[0] == 1


@pytest.mark.parametrize("degradation", ["downsample:4", "blur:1.5", "grayscale", "jpeg:30"])
def test_each_degradation_and_the_inversion_through_it_create_no_cpu_tensor(degradation, monkeypatch, prior):
    """Each degradation's forward and its target (the input brought to the degraded size), and the refinement
    objective through it (`invert --degrade`)."""
    from translate.tools import invert
    from translate.tools.degradations import parse_degradation

    d = parse_degradation(degradation)
    net = _psp_net(prior)
    with simulated_cuda(monkeypatch):
        net.to(CUDA)
        img = torch.rand(2, 3, SIZE, SIZE, device=CUDA) * 2 - 1
        with no_cpu_tensors(f"degradation {degradation}"):
            seen = d(img)
            target = d.target(img[:, :, :SIZE - 8, :SIZE - 8], SIZE)  # an input of another size is resized
            w = invert.encode(net, img)
            terms = invert.refine_objective(net, w, target, lambda_vgg=0.0, lambda_dom=0.5, lpips=None, degrade=d)
        side = d.size(SIZE)
        assert seen.device == target.device == terms["loss"].device == CUDA
        assert seen.shape == target.shape == (2, 3, side, side)


def test_a_stylegan3_render_with_a_transform_creates_no_cpu_tensor(monkeypatch, sg3_prior):
    """`translate generate --translate/--rotate` on a StyleGAN3 prior: the input transform set on the device (once
    per render, per frame of an animation), then seeds mapped and rendered."""
    from priors import generate
    from priors.loaders import load_prior

    G = load_prior(sg3_prior).eval()
    with simulated_cuda(monkeypatch):
        G.to(CUDA)
        with no_cpu_tensors("a StyleGAN3 render with a transform"):
            generate._set_transform(G, sg3_prior, (0.25, -0.1), 30.0)
            ws = G.mapping(generate.z_for([0, 1], G.z_dim).to(CUDA), truncation_psi=0.7)
            img = generate._render(G, ws, "const")
        assert G.synthesis.input.transform.device == CUDA
        assert img.device == CUDA and img.shape == (2, 3, SIZE, SIZE)


def test_predict_and_the_web_apps_shared_path_creates_no_cpu_tensor(monkeypatch, prior, tmp_path):
    """translate_files (predict and the web app) with a pSp bundle's eager backend on the device, style-mixed
    variants and resized outputs: the files are read and the outputs made uint8 on the host by design (what
    predict.py, inference.py's Translator and datamodules do); what the nets do in between runs on the device. The
    outputs' uint8 arrays are stand-ins of their shape (a fake tensor has no values to give numpy)."""
    from datamodules.io import write_image
    from translate.deploy.inference import EagerBackend, Translator
    from translate.deploy.predict import translate_files

    module = build_module(load_config([], [*TINY["psp"], f"model.prior={prior}", "model.lpips_lambda=0",
                                           "model.id_lambda=0"]))
    net, meta = module.export_spec()
    run = EagerBackend(net.eval(), torch.device("cpu"))
    translator = Translator(meta, run)
    translator.to_uint8 = lambda y: np.zeros((*y.shape[1:], y.shape[0]), np.uint8)  # (C, H, W) -> (H, W, C)
    files = []
    for i, (h, w) in enumerate([(SIZE, SIZE), (SIZE, SIZE), (SIZE + 8, SIZE - 4)]):
        files.append(write_image(tmp_path / f"in{i}.png", (torch.rand(h, w, 3) * 255).to(torch.uint8).numpy()))
    host = ("translate/deploy/predict.py:", "translate/deploy/inference.py:", "datamodules/",
            "nets/psp.py:variants:")  # nets/psp.py:variants draws the seeds' z on the host, as z_for
    skipped: list = []
    devices: set = set()
    run.net.register_forward_hook(lambda net, args, out: devices.add(out.device))
    with simulated_cuda(monkeypatch):
        run.net.to(CUDA)
        run.device = CUDA
        with no_cpu_tensors("translate_files", host=host):
            out = list(translate_files(translator, files, lambda f, why: skipped.append(f), batch_size=2,
                                       variants=2, latent_mask=[4, 5, 6, 7], resize_outputs=16))
    assert not skipped and [t.path for t in out] == files and devices == {CUDA}  # the net ran on the device
    assert all(t.output.shape == (16, 16, 3) and len(t.variants) == 2 for t in out)
