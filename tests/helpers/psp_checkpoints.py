"""Small pSp checkpoints in the published layout, for the tests of the pSp method and of its checkpoint importer."""
import os

import torch
from torch.torch_version import TorchVersion

from nets.encoders import build_encoder

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
ROS = os.path.join(DATA, "sg2", "rosinality_tiny.pt")  # 32 px, w_dim 64: 8 style vectors
TINY_ENCODER = dict(channels=(8, 16, 32, 64), w_dim=64, output_size=32, input_size=32)


def load_ros():
    """The tiny rosinality StyleGAN2 checkpoint (its g_ema and latent_avg), the decoder of the test checkpoints."""
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(ROS, weights_only=True)


def save_as_if_from_gpu(obj, path, monkeypatch):
    """torch.save records each storage's device; pSp saved from a GPU, so its file names cuda:0 for every tensor."""
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(obj, path)


def make_checkpoint(ros, name="GradualStyleEncoder", input_nc=3, opts=None, **encoder_args):
    torch.manual_seed(0)
    enc = build_encoder(name, input_nc=input_nc, **dict(TINY_ENCODER, **encoder_args))
    for m in enc.modules():  # non-trivial BatchNorm statistics, so that a missed buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.9, 1.1), m.num_batches_tracked.fill_(7)
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in ros["g_ema"].items()})
    latent_avg = ros["latent_avg"].reshape(1, -1).repeat(8, 1)  # pSp keeps it repeated per style vector
    opts = {"exp_dir": "/old/run", "encoder_type": name, "dataset_type": "ffhq_encode", "lpips_lambda": 0.8,
            **({} if name == "GradualStyleEncoder" else {"input_size": 32})} if opts is None else opts
    return enc, {"state_dict": state, "latent_avg": latent_avg, "opts": opts}
