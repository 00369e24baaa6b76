"""Editability on the toy faces: does an InterFaceGAN edit of an inverted face change the target attribute, and only it?

The toy faces know their attributes (translate.tools.directions.TOYFACE_ATTRIBUTES: yaw, glasses, hair_lightness,
smile), so an attribute model trained on rendered faces with their truth labels can measure edits:

    model = train_attribute_model()                      # a small CNN, CPU, about a minute; or load_attribute_model
    scores = editability(model, net, images, direction_path, "yaw", strength=2.0)
    # scores["target"]: mean change of yaw between G(w) and G(w + 2 scale n), in stds of yaw over the faces;
    # scores["others"]: mean |change| of the other attributes (same units); scores["ratio"] = target / others

Changes are measured between the reconstruction and the edit (both renders of the prior), so the inversion's own
error does not count. For another helper's table (e4e vs pSp) call `editability_table(model, nets, ...)` or run:

    python benchmarks/editability.py --ckpt runs/psp_toyfaces_encode/checkpoints/last.ckpt --faces 32 \
        --attribute yaw --boundary-faces 300 --classifier /tmp/attributes.safetensors

which fits the InterFaceGAN boundary of `--attribute` on `--boundary-faces` inverted training faces, edits `--faces`
held-out faces at +-strength and prints the table (the classifier is trained and saved when the file is missing).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from translate.tools import directions as dirs  # noqa: E402

ATTRIBUTES = tuple(dirs.TOYFACE_ATTRIBUTES)  # yaw, glasses, hair_lightness, smile
BINARY = ("glasses",)
MODEL_SIZE = 64  # the attribute model's input side; images are resized to it
CLASSIFIER_SEED = 11  # toy-face seed of the attribute model's faces (neither the prior's 0 nor the encoders' 1)


class AttributeModel(nn.Module):
    """Toy-face image (N, 3, H, W) in [-1, 1] -> one output per attribute: standardised regressions, and logits
    for the binary ones. `predict` returns attribute units (a probability for the binary ones)."""

    def __init__(self, width: int = 16):
        super().__init__()
        c = [3, width, 2 * width, 2 * width, 2 * width]
        layers: List[nn.Module] = []
        for a, b in zip(c[:-1], c[1:]):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c[-1] * 16, 128), nn.LeakyReLU(0.2),
                                  nn.Linear(128, len(ATTRIBUTES)))
        self.register_buffer("mean", torch.zeros(len(ATTRIBUTES)))
        self.register_buffer("std", torch.ones(len(ATTRIBUTES)))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-1] != MODEL_SIZE:
            img = F.interpolate(img, size=(MODEL_SIZE, MODEL_SIZE), mode="bilinear", align_corners=False,
                                antialias=True)
        return self.head(self.features(img))

    @torch.no_grad()
    def predict(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = torch.cat([self(img[i:i + 64]) for i in range(0, len(img), 64)])
        return {a: (torch.sigmoid(out[:, k]) if a in BINARY else out[:, k] * self.std[k] + self.mean[k])
                for k, a in enumerate(ATTRIBUTES)}


def toyface_batch(n: int, seed: int, split: str, size: int = MODEL_SIZE):
    """n toy faces (n, 3, size, size) in [-1, 1] and their attribute labels (n, len(ATTRIBUTES))."""
    from datamodules.toyfaces import ToyFaces

    faces = ToyFaces(n, size, seed=seed, split=split)
    images = torch.from_numpy(faces.arrays()["image"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = torch.tensor([[dirs.TOYFACE_ATTRIBUTES[a](faces.params(i)) for a in ATTRIBUTES] for i in range(n)])
    return images, labels.float()


def train_attribute_model(n: int = 3000, steps: int = 1500, batch: int = 64, lr: float = 2e-3,
                          seed: int = CLASSIFIER_SEED, log: bool = True) -> AttributeModel:
    """The attribute model trained on `n` toy faces (train split of `seed`) for `steps` Adam steps (flips as
    augmentation mirror the yaw)."""
    torch.manual_seed(seed)
    images, labels = toyface_batch(n, seed, "train")
    model = AttributeModel()
    regress = torch.tensor([a not in BINARY for a in ATTRIBUTES])
    model.mean[regress] = labels[:, regress].mean(0)
    model.std[regress] = labels[:, regress].std(0)
    target = torch.where(regress, (labels - model.mean) / model.std, labels)
    yaw = ATTRIBUTES.index("yaw")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, n, (batch,), generator=gen)
        x, y = images[idx], target[idx].clone()
        flip = torch.rand(batch, generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        y[:, yaw] = torch.where(flip, -y[:, yaw] - 2 * model.mean[yaw] / model.std[yaw], y[:, yaw])
        out = model(x)
        loss = (F.mse_loss(out[:, regress], y[:, regress])
                + F.binary_cross_entropy_with_logits(out[:, ~regress], y[:, ~regress]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log and (step + 1) % 250 == 0:
            print(f"attribute model: step {step + 1}/{steps}, loss {float(loss):.4f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return model.eval().requires_grad_(False)


def save_attribute_model(model: AttributeModel, path: str | Path) -> Path:
    from safetensors.torch import save_file

    from safeio import write_atomic

    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    write_atomic(Path(path), lambda p: save_file(sd, p, metadata={"attributes": ",".join(ATTRIBUTES)}))
    return Path(path)


def load_attribute_model(path: str | Path) -> AttributeModel:
    from safeio.loading import read_safetensors
    from safeio.strict import strict_load

    return strict_load(AttributeModel(), read_safetensors(Path(path)), str(path)).eval().requires_grad_(False)


def attribute_accuracy(model: AttributeModel, n: int = 200) -> Dict[str, float]:
    """On held-out toy faces: R^2 of each regression, accuracy of each binary attribute."""
    images, labels = toyface_batch(n, CLASSIFIER_SEED, "test")
    pred = model.predict(images)
    out = {}
    for k, a in enumerate(ATTRIBUTES):
        y = labels[:, k]
        if a in BINARY:
            out[a] = float(((pred[a] > 0.5).float() == y).float().mean())
        else:
            out[a] = float(1 - (pred[a] - y).square().sum() / (y - y.mean()).square().sum())
    return out


def editability(model: AttributeModel, net, images: torch.Tensor, direction: str | Path, attribute: str,
                strength: float = 2.0, refine_steps: int = 0) -> Dict[str, float]:
    """Invert `images` (N, 3, H, W) with the pSp `net`, edit by -strength and +strength along `direction` and
    measure the attributes' change from - to + per unit of strength, in stds of each attribute over the model's
    training faces (binary: change of probability). Keys: "target", "others" (mean |change| of the rest), "ratio",
    and one per attribute."""
    from translate.tools.edit import load_checked_direction, render_edits
    from translate.tools.invert import invert_image

    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute: expected one of {list(ATTRIBUTES)}, got '{attribute}'")
    d = load_checked_direction(net, direction)
    minus, plus = [], []
    for img in images:
        w = invert_image(net, img, refine_steps=refine_steps).w
        e = render_edits(net, w, d, [-strength, strength])
        minus.append(e[0])
        plus.append(e[1])
    a, b = model.predict(torch.stack(minus)), model.predict(torch.stack(plus))
    change = {}
    for k, name in enumerate(ATTRIBUTES):
        unit = 1.0 if name in BINARY else float(model.std[k])
        change[name] = float((b[name] - a[name]).mean()) / unit / (2 * strength)
    others = float(np.mean([abs(v) for k, v in change.items() if k != attribute]))
    return {"target": change[attribute], "others": others, "ratio": abs(change[attribute]) / max(others, 1e-8),
            **{f"change_{k}": v for k, v in change.items()}}


def boundary_for(net, attribute: str, n: int, out: str | Path, layers: Optional[Sequence[int]] = None,
                 refine_steps: int = 0) -> Path:
    """The InterFaceGAN direction of `attribute` fitted to `n` inverted toy faces of seed CLASSIFIER_SEED + 1
    (faces that neither the prior, the encoders nor the attribute model were trained on)."""
    layers = list(range(net.n_styles)) if layers is None else list(layers)
    codes = dirs.toyface_codes(net, n, seed=CLASSIFIER_SEED + 1, refine_steps=refine_steps)
    labels = torch.tensor(dirs.toyface_labels(n, attribute, seed=CLASSIFIER_SEED + 1))
    return dirs.make_boundary(net.decoder, layers, out, codes, labels, attribute,
                              {"toyfaces": n, "attribute": attribute, "seed": CLASSIFIER_SEED + 1})


def editability_table(model: AttributeModel, nets: Dict[str, object], attribute: str, faces: int = 32,
                      boundary_faces: int = 300, strength: float = 2.0, work: Optional[Path] = None) -> List[str]:
    """One row per named pSp net: its own boundary of `attribute`, then `editability` on held-out faces."""
    from translate.tools.invert import output_size

    rows = [f"{'encoder':<24} {'target':>8} {'others':>8} {'ratio':>7} " + " ".join(f"{a:>14}" for a in ATTRIBUTES)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work or tmp)
        for name, net in nets.items():
            path = boundary_for(net, attribute, boundary_faces, work / name)
            images, _ = toyface_batch(faces, CLASSIFIER_SEED + 2, "test", size=output_size(net))
            s = editability(model, net, images, path, attribute, strength)
            rows.append(f"{name:<24} {s['target']:>8.3f} {s['others']:>8.3f} {s['ratio']:>7.2f} "
                        + " ".join(f"{s['change_' + a]:>14.3f}" for a in ATTRIBUTES))
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", nargs="*", default=[], help="pSp training checkpoints (one row each)")
    p.add_argument("--model", nargs="*", default=[], help="pSp bundles (one row each)")
    p.add_argument("--attribute", default="yaw", choices=list(ATTRIBUTES))
    p.add_argument("--faces", type=int, default=32, help="held-out faces edited")
    p.add_argument("--boundary-faces", type=int, default=300, help="inverted faces the boundary is fitted to")
    p.add_argument("--strength", type=float, default=2.0)
    p.add_argument("--classifier", help="attribute model .safetensors (trained and written when missing)")
    p.add_argument("--classifier-steps", type=int, default=1500)
    args = p.parse_args(argv)

    from translate.tools.invert import load_psp_net

    if args.classifier and Path(args.classifier).is_file():
        model = load_attribute_model(args.classifier)
    else:
        model = train_attribute_model(steps=args.classifier_steps)
        if args.classifier:
            save_attribute_model(model, args.classifier)
    acc = attribute_accuracy(model)
    print("attribute model on 200 held-out faces (R^2; accuracy for glasses): "
          + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    nets = {Path(c).parent.parent.name or c: load_psp_net(ckpt=c) for c in args.ckpt}
    nets.update({Path(m).name: load_psp_net(model=m) for m in args.model})
    if not nets:
        return 0
    print(f"InterFaceGAN edit of '{args.attribute}' at +-{args.strength} (change per unit strength, in stds of each "
          f"attribute; glasses: probability)")
    print("\n".join(editability_table(model, nets, args.attribute, args.faces, args.boundary_faces, args.strength)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
