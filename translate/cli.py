"""The one command line: parse, build, call Lightning. `python cli.py COMMAND ...` or `translate COMMAND ...`.

Commands: fit (train), validate and test (score a checkpoint), export (checkpoint -> inference bundle), predict
(translate images with a bundle), app (a local web page that translates with bundles), quantize (an int8 bundle
for the CPU), import (reference pix2pix/CycleGAN, pSp or e4e weights -> bundle), generate (samples from a StyleGAN2
or StyleGAN3 prior), convert-prior (NVIDIA/rosinality prior -> safetensors), evaluate (score folders: FID, KID,
PSNR, SSIM, LPIPS, identity), invert (images -> W+ codes, also through a degradation), interpolate (paths between
codes), directions (latent directions: SeFa, GANSpace, InterFaceGAN), edit (move inverted images along a
direction), doctor (versions, devices and op
backends). A user's mistake (config, data, file, checkpoint) is one line on stderr and exit status 2; anything else
keeps its traceback.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from typing import List, Optional

from safeio.errors import ConfigError

USAGE_EXAMPLES = """examples:
  translate fit --config configs/pix2pix/facades.yaml data.root=/data/facades trainer.max_epochs=5
  translate fit --config configs/pix2pix/demo.yaml --resume last
  translate validate --ckpt runs/pix2pix/checkpoints/last.ckpt
  translate export --ckpt runs/pix2pix/checkpoints/last.ckpt --out bundle/
  translate export --ckpt runs/cyclegan_demo/checkpoints/last.ckpt --out bundles/ --direction both
  translate predict --model bundle/ --input photos/ --output translated/
  translate app --model bundle/ --port 7860
  translate import --from junyanz --weights latest_net_G.pth --out bundle/
  translate evaluate --pred translated/ --ref targets/ --inception pt_inception-2015-12-05-6726825d.pth
  translate invert --ckpt runs/psp_toyfaces_encode/checkpoints/last.ckpt --input faces/ --out codes/ --refine 200
  translate interpolate --model bundle/ --codes codes/a.safetensors codes/b.safetensors --steps 8 --out path.png
  translate directions sefa --prior prior/ --layers 0-3 --num 5 --out dirs/
  translate edit --model bundle/ --input faces/ --direction dirs/sefa_0-3_00.safetensors --strength -3:3:7 --out edits/
"""


def _add_config_args(p: argparse.ArgumentParser, config_required: bool, example: str) -> None:
    p.add_argument("-c", "--config", action="append", default=[], required=config_required,
                   help="YAML config file; repeat to stack several (later files win)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help=f"dotted overrides, e.g. {example}")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="translate", description="Image-to-image translation: train, evaluate, export and run translators.",
        epilog=USAGE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fit", help="train a model from YAML configs")
    _add_config_args(p, config_required=False, example="trainer.max_epochs=5 data.root=/data/mine")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", metavar="last|auto|PATH",
                       help="continue from <run_dir>/checkpoints/last.ckpt, a path, or (auto) the run's newest "
                            "checkpoint if it has one (else start): for job scripts that are requeued")
    again.add_argument("--overwrite", action="store_true",
                       help="start over in a run_dir that holds checkpoints of an earlier run (they are deleted)")

    for name, what in (("validate", "validation"), ("test", "test")):
        p = sub.add_parser(name, help=f"score a checkpoint on the {what} split")
        p.add_argument("--ckpt", required=True, help="checkpoint written by `fit`")
        p.add_argument("--save-images", metavar="DIR",
                       help="also write every sample's images as DIR/<kind>/<stem>.png (input, output, target), "
                            "for `evaluate --pred DIR/output --ref DIR/target`; a new or empty folder")
        _add_config_args(p, config_required=False,
                         example="data.root=/data/other data.batch_size=4 (the checkpoint's config is the base)")

    p = sub.add_parser("export", help="export a checkpoint to an inference bundle (ONNX, pt2, safetensors)")
    p.add_argument("--ckpt", required=True, help="checkpoint written by `fit`")
    p.add_argument("--out", required=True, help="bundle folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.add_argument("--direction", choices=["AtoB", "BtoA", "both"], default=None,
                   help="methods with a translator per direction (cyclegan): G_A (AtoB, the default), G_B (BtoA), or "
                        "both as OUT/AtoB and OUT/BtoA")
    _add_config_args(p, config_required=False,
                     example="export.opset=17 export.example_size=512 (the checkpoint's config is the base)")

    p = sub.add_parser("predict", help="translate an image or a folder with an exported bundle")
    p.add_argument("--model", required=True, help="bundle folder written by `export` or `import`")
    p.add_argument("--input", required=True, help="image file or folder")
    p.add_argument("--output", required=True, help="output folder (must not be inside the input folder)")
    p.add_argument("--batch-size", type=int, default=8, help="images translated together (default 8)")
    p.add_argument("--backend", default="auto", choices=["auto", "eager", "onnx", "pt2"],
                   help="auto: onnxruntime on the CPU (without --variants, for bundles traced for any size), else the "
                        "eager net where the bundle can rebuild it, else onnx")
    p.add_argument("--device", default="cpu", help="where the net runs: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--cpu-workers", type=int, default=None, metavar="N",
                   help="onnx backend on the CPU: N images run side by side, the cores shared among them (default: "
                        "one image per core, up to 4)")
    p.add_argument("--variants", type=int, default=0,
                   help="pSp bundles: also write N style-mixed outputs per image (<stem>_mix<k>)")
    p.add_argument("--latent-mask", default=None, help="pSp: layers to mix, e.g. 8-17 (default: the bundle's)")
    p.add_argument("--mix-alpha", type=float, default=None, help="pSp: blend weight of the random codes")
    p.add_argument("--seed", type=int, default=0, help="pSp: seed of the first variant's random code")
    p.add_argument("--resize-outputs", type=int, default=None, metavar="SIZE",
                   help="average-pool outputs to SIZE x SIZE (pSp's --resize_outputs: 256)")
    p.add_argument("--side-by-side", "--couple-outputs", dest="side_by_side", action="store_true",
                   help="also write OUTPUT/side_by_side/<name>: input | output | variants (pSp's --couple_outputs)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave out inputs whose outputs are all in OUTPUT already (finish an interrupted run)")

    p = sub.add_parser("quantize", help="an int8 copy of a bundle for the CPU, calibrated on your images, with its "
                                        "error (PSNR) against the fp32 bundle")
    p.add_argument("--model", required=True, help="bundle folder written by `export` or `import`")
    p.add_argument("--calibration", required=True, help="folder of images like those you will translate")
    p.add_argument("--out", required=True, help="int8 bundle folder to create")
    p.add_argument("--held-out", type=float, default=0.25,
                   help="fraction of the images kept out of calibration to measure the error (default 0.25)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")

    p = sub.add_parser("import", help="turn weights of a reference implementation into a bundle")
    p.add_argument("--from", dest="source", required=True, choices=["junyanz", "psp", "e4e"],
                   help="where the weights come from: junyanz (pix2pix/CycleGAN generators), psp (pSp or e4e "
                        "checkpoints, told apart by their opts) or e4e (the same, but only e4e checkpoints)")
    p.add_argument("--weights", required=True, help="e.g. latest_net_G.pth of the reference pix2pix/CycleGAN code")
    p.add_argument("--out", required=True, help="bundle folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.add_argument("--netG", help="override the inferred generator architecture (e.g. unet_256, resnet_9blocks)")
    p.add_argument("--norm", choices=["batch", "instance", "none"], help="override the inferred norm layer")
    p.add_argument("--use-dropout", action="store_true", help="the net was trained with dropout (not inferable)")
    p.add_argument("--norm-stats", default=None, choices=["sample", "running"],
                   help="BatchNorm at test time: 'sample' = the reference default (train-mode BN), 'running' = --eval")
    p.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"],
                   help="which way the imported generator translates (recorded in the bundle; default AtoB)")
    p.add_argument("--size", type=int, default=256, help="side of the example image used for export checks")

    p = sub.add_parser("generate", help="render samples or a style-mixing grid from a StyleGAN2/3 prior")
    p.add_argument("--prior", required=True, help="prior folder, NVIDIA .pkl/.pt or rosinality .pt")
    p.add_argument("--seeds", default="0-15", help="e.g. 0-15 or 1,5,9")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi")
    p.add_argument("--noise-mode", default="const", choices=["const", "random", "none"],
                   help="per-pixel noise: the prior's stored constants (default), fresh draws, or none")
    p.add_argument("--mix-seeds", default=None, help="style-mixing columns, e.g. 100-103")
    p.add_argument("--mix-layers", default="coarse", choices=["coarse", "middle", "fine"],
                   help="which layers take the --mix-seeds styles (default coarse)")
    p.add_argument("--translate", default=None, metavar="X,Y",
                   help="StyleGAN3: translate the output by X,Y (fractions of the image side), as gen_images.py")
    p.add_argument("--rotate", type=float, default=None, metavar="DEG", help="StyleGAN3: rotate the output by DEG")
    p.add_argument("--animate", type=int, default=None, metavar="FRAMES",
                   help="StyleGAN3: write an animation of FRAMES frames moving from the identity to --translate / "
                        "--rotate (--out ending in .gif or .mp4)")
    p.add_argument("--out", required=True, help="grid image to write (.png/.jpg/.webp), or a folder for one image per "
                                                "seed (seed0042.png, e.g. for FID); .gif/.mp4 with --animate")

    p = sub.add_parser("convert-prior", help="convert a StyleGAN2/3 prior (NVIDIA/rosinality) to our safetensors format")
    p.add_argument("src", help="NVIDIA .pkl/.pt, rosinality .pt or pSp checkpoint")
    p.add_argument("out", help="output folder (prior.safetensors + prior.json), or X.safetensors for the pair "
                               "X.safetensors + X.json")
    p.add_argument("--overwrite", action="store_true", help="replace prior files already at OUT")

    p = sub.add_parser("evaluate", help="score a folder of results against references: FID/KID, PSNR/SSIM/LPIPS")
    p.add_argument("--pred", required=True, help="folder of results (translated or generated images)")
    p.add_argument("--ref", required=True, help="folder of references; same file stems -> pair metrics too")
    p.add_argument("-c", "--config", action="append", default=[], help="YAML file with an 'eval:' section")
    p.add_argument("--metrics", help="comma list of psnr,ssim,l1,lpips,id,fid,kid (default: all that can run)")
    p.add_argument("--inception", dest="inception_weights", help="FID Inception weights (eval.inception_weights)")
    p.add_argument("--inception-layout", choices=["fid", "torchvision"], help="eval.inception_layout (default fid)")
    p.add_argument("--lpips-backbone", help="torchvision alexnet/vgg16 state dict (eval.lpips_backbone)")
    p.add_argument("--lpips-weights", "--lpips-heads", dest="lpips_weights",
                   help="LPIPS v0.1 heads alex.pth/vgg.pth (eval.lpips_weights)")
    p.add_argument("--lpips-net", choices=["alex", "vgg"], help="eval.lpips_net (default alex)")
    p.add_argument("--id-weights", help="face recognition for identity similarity: model_ir_se50.pth or a "
                                        "CurricularFace IR-101 backbone (eval.id_weights)")
    p.add_argument("--size", type=int, help="resize every image to SIZE x SIZE first (eval.size)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="read images as 1 or 3 channels (eval.channels)")
    p.add_argument("--batch-size", type=int, help="eval.batch_size (default 16)")
    p.add_argument("--kid-subset-size", type=int, help="eval.kid_subset_size (default 1000)")
    p.add_argument("--device", help="eval.device (default cpu)")
    p.add_argument("--out", help="also write the results to this JSON file")

    _add_inversion_parsers(sub)
    p = sub.add_parser("app", help="serve a local web page that translates uploaded images with bundles (needs the "
                                   "optional extra: pip install -e \".[app]\")")
    p.add_argument("--model", action="append", required=True,
                   help="bundle folder written by `export` or `import`; repeat for several (the page picks one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 serves the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--max-pixels", type=int, default=4096 * 4096,
                   help="refuse uploads with more pixels than this (width x height; default 4096 x 4096)")
    p.add_argument("--backend", default="auto", choices=["auto", "eager", "onnx", "pt2"],
                   help="auto: what predict runs (onnxruntime on the CPU when the bundle has its graph), except "
                        "pSp bundles: their eager net (the variants need it)")
    p.add_argument("--device", default="cpu", help="where the nets run: cpu (default), cuda, cuda:1, ...")
    p = sub.add_parser("doctor", help="report versions, devices and which op backend (CUDA or reference) runs and why")
    p.add_argument("--check-ops", action="store_true",
                   help="on a CUDA device: build (if needed) and load the compiled ops and run their self-check now")
    return parser


def _add_inversion_parsers(sub) -> None:
    p = sub.add_parser("invert", help="invert images into W+ codes of a pSp net's StyleGAN2 (encoder, ReStyle, "
                                      "domain-regularised refinement)")
    _add_psp_source(p)
    p.add_argument("--input", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="folder for <stem>.safetensors (code) and <stem>.png (reconstruction)")
    p.add_argument("--refine", type=int, default=0, metavar="N", help="N optimisation steps from the encoder's code")
    p.add_argument("--restyle", type=int, default=0, metavar="K", help="K ReStyle iterations (ReStyle encoders)")
    p.add_argument("--no-domain", action="store_true", help="refine without the domain term (lambda_dom 0)")
    p.add_argument("--lambda-dom", type=float, default=None, help="weight of ||w - E(G(w))||^2 (default 2.0)")
    p.add_argument("--lambda-vgg", type=float, default=None, help="weight of the LPIPS term (default 1.0)")
    p.add_argument("--lr", type=float, default=None, help="Adam step size of the refinement (default 0.01)")
    p.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"], help="LPIPS backbone (default alex)")
    p.add_argument("--lpips-backbone", help="torchvision alexnet/vgg16 state dict (with --lpips-weights)")
    p.add_argument("--lpips-weights", help="LPIPS v0.1 heads alex.pth/vgg.pth; without them LPIPS is off")
    p.add_argument("--degrade", metavar="D",
                   help="invert through a degradation (with --refine): downsample:F, blur:SIGMA, grayscale or "
                        "jpeg:Q; the input is the degraded image, the written image the full-resolution restoration")
    p.add_argument("--device", default="cpu", help="where the nets run: cpu (default), cuda, cuda:1, ...")

    p = sub.add_parser("interpolate", help="decode a linear path between two W+ codes, or style-mix them, to a grid")
    _add_psp_source(p)
    p.add_argument("--codes", nargs=2, required=True, metavar=("A", "B"), help="two codes written by `invert`")
    p.add_argument("--steps", type=int, default=8, help="images along the path, both ends included")
    p.add_argument("--mix", choices=["coarse", "medium", "fine"], help="style mixing of these layers instead")
    p.add_argument("--out", required=True, help="PNG grid to write")
    p.add_argument("--device", default="cpu", help="where the nets run: cpu (default), cuda, cuda:1, ...")
    _add_editing_parsers(sub)


def _add_editing_parsers(sub) -> None:
    p = sub.add_parser("directions", help="find latent directions of a StyleGAN2 prior: sefa, ganspace, boundary")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND", help="sefa, ganspace or boundary")
    for kind, what in (("sefa", "SeFa: eigenvectors of the chosen layers' style affines (no data)"),
                       ("ganspace", "GANSpace: principal components of W sampled through the mapping network"),
                       ("boundary", "InterFaceGAN: a linear boundary of labelled inverted codes")):
        k = kinds.add_parser(kind, help=what)
        if kind == "boundary":
            k.add_argument("--prior", help="the prior (default: the pSp net's, with --model/--ckpt)")
            src = k.add_mutually_exclusive_group()
            src.add_argument("--ckpt", help="pSp training checkpoint (to invert toy faces)")
            src.add_argument("--model", help="pSp bundle (to invert toy faces)")
            k.add_argument("--codes", help="folder of codes written by `invert` (with --labels)")
            k.add_argument("--labels", help="CSV of file name -> label (binary: logistic regression; scalar: "
                                            "least squares)")
            k.add_argument("--toyfaces", type=int, metavar="N",
                           help="instead of --codes: invert N toy faces with the pSp net, labelled by --attribute")
            k.add_argument("--attribute", help="toy-face attribute: yaw, glasses, hair_lightness or smile")
            k.add_argument("--refine", type=int, default=0, metavar="N", help="refine each toy face's code N steps")
            k.add_argument("--name", help="file name: OUT/boundary_<name>.safetensors (default: the attribute or "
                                          "the CSV's stem)")
        else:
            k.add_argument("--prior", required=True, help="prior folder, NVIDIA .pkl/.pt or rosinality .pt")
            k.add_argument("--num", type=int, default=5, help="how many leading directions to write (default 5)")
        if kind == "ganspace":
            k.add_argument("--samples", type=int, default=20000, help="W samples of the PCA (default 20000)")
            k.add_argument("--seed", type=int, default=0, help="seed of the z samples")
        k.add_argument("--layers", default="all", help="W+ layers the directions apply to, e.g. 0-5 (default all)")
        k.add_argument("--out", required=True, help="folder for the .safetensors direction files")

    p = sub.add_parser("edit", help="invert images (or read codes) and render them moved along a latent direction")
    _add_psp_source(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="folder of images to invert and edit")
    src.add_argument("--codes", help="folder of codes written by `invert`")
    p.add_argument("--direction", required=True, help="a direction file written by `directions`")
    p.add_argument("--strength", default="-3:3:7",
                   help="start:stop:count or a comma list, in stds of W along the direction (default -3:3:7); "
                        "a value that starts with '-' needs the = form: --strength=-2:2:5")
    p.add_argument("--layers", help="W+ layers to move, e.g. 0-5 (default: the direction's own)")
    p.add_argument("--out", required=True, help="folder: OUT/<stem>/ edits, reconstruction, strip.png")
    p.add_argument("--refine", type=int, default=0, metavar="N", help="N refinement steps of each inversion")
    p.add_argument("--restyle", type=int, default=0, metavar="K", help="K ReStyle iterations (ReStyle encoders)")
    p.add_argument("--device", default="cpu", help="where the nets run: cpu (default), cuda, cuda:1, ...")


def _add_psp_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="pSp training checkpoint written by `fit`")
    src.add_argument("--model", help="pSp bundle written by `export` or `import --from psp`")


def _invert(args) -> int:
    from translate.tools import invert
    from translate.tools.degradations import parse_degradation

    degrade = parse_degradation(args.degrade)  # before anything is loaded
    net = invert.load_psp_net(args.ckpt, args.model, device=args.device)
    lpips = None
    if args.lpips_weights or args.lpips_backbone:
        from nets.perceptual import load_lpips

        lpips = load_lpips(args.lpips_net, args.lpips_backbone, args.lpips_weights, backbone_key="--lpips-backbone",
                           heads_key="--lpips-weights").to(args.device)
    elif args.refine:
        print("note: LPIPS is off (no --lpips-backbone/--lpips-weights given): the perceptual term has weight 0")
    kwargs = {k: v for k, v in (("lambda_vgg", args.lambda_vgg), ("lambda_dom", args.lambda_dom), ("lr", args.lr))
              if v is not None}
    if args.no_domain:
        kwargs["lambda_dom"] = 0.0
    if degrade is not None:
        kwargs["degrade"] = degrade
    results = invert.invert_folder(net, args.input, args.out, refine_steps=args.refine, restyle=args.restyle,
                                   lpips=lpips, **kwargs)
    print(invert.format_results(results))
    print(f"{len(results)} codes and reconstructions written to {args.out}")
    if not results:
        print("error: no image could be inverted (see the warnings above)", file=sys.stderr)
        return 1
    return 0


def _interpolate(args) -> int:
    from translate.tools import invert

    from priors.generate import check_out, save_grid

    if not args.mix:  # before anything is loaded or rendered
        invert.check_steps(args.steps)
    check_out(args.out, 4 if args.mix else args.steps, grid=True)
    net = invert.load_psp_net(args.ckpt, args.model, device=args.device)
    w_a, w_b = (invert.load_code(p, net).to(args.device) for p in args.codes)
    if args.mix:
        out = save_grid(invert.mix_grid(net, w_a, w_b, args.mix), args.out, nrow=4)
    else:
        out = save_grid(invert.interpolate(net, w_a, w_b, args.steps), args.out, nrow=args.steps)
    print(f"grid written: {out}")
    return 0


def _directions(args) -> int:
    from translate.tools import directions as dirs

    if args.kind in ("sefa", "ganspace"):
        from priors.loaders import load_prior

        G = load_prior(args.prior)
        layers = dirs.parse_layers(args.layers, G.num_ws)
        if args.kind == "sefa":
            paths = dirs.make_sefa(G, layers, args.num, args.out)
        else:
            paths = dirs.make_ganspace(G, layers, args.num, args.out, samples=args.samples, seed=args.seed)
    else:
        paths = [_boundary(args, dirs)]
    for path in paths:
        d = dirs.load_direction(path)
        print(f"{path}: {d.method}, layers {dirs.format_layers(d.layers)}, scale {d.scale:.4g}, {d.how}")
    return 0


def _boundary(args, dirs):
    from translate.tools import invert

    net = None
    if args.ckpt or args.model:
        net = invert.load_psp_net(args.ckpt, args.model)
    if args.prior:
        from priors.loaders import load_prior

        G = load_prior(args.prior)
        if net is not None and dirs.prior_fingerprint(G.synthesis) != dirs.prior_fingerprint(net.decoder.synthesis):
            raise ConfigError(f"--prior {args.prior} is not the pSp net's prior: give one of them", key="--prior")
    elif net is not None:
        G = net.decoder
    else:
        raise ConfigError("directions boundary: give --prior (with --codes/--labels) or a pSp net (--model/--ckpt)",
                          key="--prior")
    layers = dirs.parse_layers(args.layers, int(G.num_ws))
    if args.toyfaces:
        if net is None or not args.attribute or args.codes or args.labels:
            raise ConfigError("--toyfaces N inverts toy faces: give a pSp net (--model/--ckpt) and --attribute, "
                              "not --codes/--labels", key="--toyfaces")
        import torch

        labels = torch.tensor(dirs.toyface_labels(args.toyfaces, args.attribute))
        codes = dirs.toyface_codes(net, args.toyfaces, refine_steps=args.refine)
        name, how = args.name or args.attribute, {"toyfaces": args.toyfaces, "attribute": args.attribute,
                                                  "refine": args.refine}
    else:
        if not (args.codes and args.labels):
            raise ConfigError("directions boundary: give --codes and --labels (a CSV of file name -> label), or "
                              "--toyfaces N --attribute A with a pSp net", key="--codes")
        from pathlib import Path

        _, codes, labels = dirs.codes_with_labels(args.codes, dirs.read_labels(args.labels),
                                                  int(G.num_ws), int(G.w_dim))
        name, how = args.name or Path(args.labels).stem, {"labels": Path(args.labels).name}
    return dirs.make_boundary(G, layers, args.out, codes, labels, name, how)


def _edit(args) -> int:
    from translate.tools import directions as dirs
    from translate.tools import invert
    from translate.tools.edit import edit_folder

    strengths = dirs.parse_strengths(args.strength)
    net = invert.load_psp_net(args.ckpt, args.model, device=args.device)
    results = edit_folder(net, args.direction, strengths, args.out, input=args.input, codes=args.codes,
                          layers=args.layers, refine_steps=args.refine, restyle=args.restyle)
    print(f"{len(results)} image(s) edited at strengths {', '.join(f'{s:g}' for s in strengths)}: "
          f"{args.out}/<stem>/strip.png")
    if not results:
        print("error: no image could be edited (see the warnings above)", file=sys.stderr)
        return 1
    return 0


def _app(args) -> int:
    import importlib.util

    from translate.tools import app

    if importlib.util.find_spec("gradio") is None:
        print(f"error: {app.INSTALL_HINT}", file=sys.stderr)
        return 2
    app.serve(args.model, host=args.host, port=args.port, max_pixels=app.check_max_pixels(args.max_pixels),
              backend=args.backend, device=args.device)
    return 0


def _print_config(args) -> None:
    from translate.train.config import load_config, to_yaml

    print(to_yaml(load_config(args.config, args.overrides)), end="")


def main(argv: Optional[List[str]] = None) -> int:
    from translate import console

    console.setup()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting positionals at an option: `--config a.yaml x=1 --resume last y=2` leaves x=1 and
    # y=2 over; they are overrides too, in the order given
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return _run(args)
    except Exception as e:  # noqa: BLE001 - a user's mistake is one line; anything else keeps its traceback
        message = _user_error(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def _user_error(e: BaseException) -> Optional[str]:
    """The one-line message of an error a user can fix, else None (a bug: its traceback shows). User errors are
    safeio.UserError (ConfigError naming its key, LoadError naming its file, data errors), a file that is missing,
    in the way or unreadable, and a diverged run; any other ValueError or TypeError is a bug."""
    from safeio.errors import UserError

    callbacks = sys.modules.get("translate.train.callbacks")  # not imported: cannot have raised
    if callbacks is not None and isinstance(e, callbacks.TrainingDiverged):
        return str(e)
    if isinstance(e, (UserError, FileNotFoundError, FileExistsError, pickle.UnpicklingError, IsADirectoryError,
                      NotADirectoryError, PermissionError)):
        return _message(e)
    lightning = sys.modules.get("lightning_fabric.utilities.exceptions")  # not imported: cannot have raised
    if lightning is not None and isinstance(e, lightning.MisconfigurationException):
        return _message(e)
    if isinstance(e, RuntimeError) and "Error(s) in loading state_dict" in str(e):
        return (f"the checkpoint's weights do not fit the configured nets (were model.* options changed?): "
                f"{_message(e)}")
    return None


def _message(e: BaseException) -> str:
    """The error's own message: without the worker traceback a DataLoader worker puts in front of it."""
    text = str(e)
    if "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def _run(args) -> int:
    if getattr(args, "print_config", False):
        if args.command in ("validate", "test", "export"):
            from translate.deploy.checkpoints import load_checkpoint
            from translate.train.config import load_config, to_yaml

            base = load_checkpoint(args.ckpt).get("run_config")
            print(to_yaml(load_config(args.config, args.overrides, base=base)), end="")
        else:
            _print_config(args)
        return 0

    if args.command == "fit":
        from translate.train import runner
        from translate.train.config import load_config

        cfg = load_config(args.config, args.overrides)
        try:
            trainer, _ = runner.fit(cfg, resume=args.resume, overwrite=args.overwrite)
        except runner.TrainingStopped as e:  # SIGTERM or Ctrl-C: a stopped run is not a finished one
            print(f"stopped by {e.by} after a minibatch; checkpoint saved: continue with --resume last "
                  f"(run directory: {cfg.run_dir})", file=sys.stderr)
            return e.exit_status
        if trainer.is_global_zero:
            print(f"run directory: {cfg.run_dir}")
        return 0

    if args.command in ("validate", "test"):
        from translate.train import runner

        runner.evaluate(args.command, args.ckpt, args.config, args.overrides, save_images=args.save_images)
        from pytorch_lightning.utilities import rank_zero_only

        if args.save_images and rank_zero_only.rank == 0:
            print(f"images written to {args.save_images}")
        return 0

    if args.command == "export":
        from translate.train import runner

        out = runner.export(args.ckpt, args.out, args.config, args.overrides, overwrite=args.overwrite,
                            direction=args.direction)
        what = "prior" if (out / "prior.json").is_file() else "bundle"  # a stylegan2 run exports its G_ema
        print(f"{what} written: {out}")
        return 0

    if args.command == "predict":
        from translate.deploy.inference import load_translator, predict_backend
        from translate.deploy.predict import predict_paths

        mask = None
        if args.latent_mask:
            from priors.generate import parse_seeds

            mask = parse_seeds(args.latent_mask, "--latent-mask")
        backend = predict_backend(args.model, args.device, args.variants) if args.backend == "auto" else args.backend
        translator = load_translator(args.model, backend=backend, device=args.device, cpu_workers=args.cpu_workers)
        written = predict_paths(translator, args.input, args.output, batch_size=args.batch_size,
                                variants=args.variants, latent_mask=mask, mix_alpha=args.mix_alpha, seed=args.seed,
                                resize_outputs=args.resize_outputs, side_by_side=args.side_by_side,
                                skip_existing=args.skip_existing)
        print(f"{len(written)} images written to {args.output} ({translator.backend} backend)")
        if not written and not written.already:
            print("error: no image could be translated (see the warnings above)", file=sys.stderr)
            return 1
        return 0

    if args.command == "quantize":
        from translate.deploy.quantize import quantize_bundle

        q = quantize_bundle(args.model, args.calibration, args.out, held_out=args.held_out, overwrite=args.overwrite)
        print(f"int8 bundle written: {args.out}; PSNR against the fp32 bundle: {q['calibration_psnr_db']} dB on "
              f"{q['calibration_images']} calibration images, {q['held_out_psnr_db']} dB on {q['held_out_images']} "
              f"held-out ones" + ("" if q["negligible"] else f" (below {q['negligible_db']:g} dB: check the "
                                                               f"outputs before using it)"))
        return 0

    if args.command == "import" and args.source in ("psp", "e4e"):
        from translate.deploy.importers import import_psp

        out = import_psp(args.weights, args.out, overwrite=args.overwrite, source=args.source)
        print(f"bundle written: {out}")
        return 0

    if args.command == "import":
        from translate.deploy.importers import import_junyanz

        out = import_junyanz(
            args.weights, args.out, netG=args.netG, norm=args.norm, use_dropout=args.use_dropout or None,
            norm_stats=args.norm_stats, direction=args.direction, size=args.size, overwrite=args.overwrite,
        )
        print(f"bundle written: {out}")
        return 0
    if args.command == "generate":
        from priors.generate import animate, generate, parse_pair, parse_seeds

        mix = parse_seeds(args.mix_seeds, "--mix-seeds") if args.mix_seeds else None
        seeds = parse_seeds(args.seeds)
        shift = parse_pair(args.translate) if args.translate is not None else None
        if args.animate is not None:
            out = animate(args.prior, seeds, args.out, frames=args.animate, trunc=args.trunc, translate=shift,
                          rotate=args.rotate)
            print(f"animation written: {out}")
            return 0
        out = generate(args.prior, seeds, args.out, trunc=args.trunc, noise_mode=args.noise_mode,
                       mix_seeds=mix, mix_layers=args.mix_layers, translate=shift, rotate=args.rotate)
        print(f"grid written: {out}" if out.suffix else f"{len(seeds)} images written to {out}")
        return 0

    if args.command == "convert-prior":
        from priors.loaders import convert_prior

        print(f"prior written: {convert_prior(args.src, args.out, overwrite=args.overwrite)}")
        return 0

    if args.command == "evaluate":
        from translate.tools import evaluate as ev

        cfg = ev.load_eval_config(args.config, **{k: getattr(args, k) for k in (
            "inception_weights", "inception_layout", "lpips_backbone", "lpips_weights", "lpips_net", "id_weights",
            "size", "channels", "batch_size", "kid_subset_size", "device")})
        if args.out:
            ev.check_out(args.out, args.pred, args.ref)
        result = ev.evaluate_folders(args.pred, args.ref, cfg, metrics=ev.parse_metrics(args.metrics))
        print(ev.format_table(result))
        if args.out:
            print(f"written: {ev.write_json(result, args.out)}")
        if not result["metrics"]:
            print("error: no metric could be computed (see 'skipped' above)", file=sys.stderr)
            return 1
        return 0

    if args.command == "invert":
        return _invert(args)

    if args.command == "interpolate":
        return _interpolate(args)

    if args.command == "directions":
        return _directions(args)

    if args.command == "edit":
        return _edit(args)

    if args.command == "app":
        return _app(args)

    if args.command == "doctor":
        from translate.tools.doctor import report

        print(report(check_ops=args.check_ops))
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
