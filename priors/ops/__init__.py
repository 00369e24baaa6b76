"""StyleGAN2 and StyleGAN3 ops: one public function per op; upfirdn2d, bias_act and filtered_lrelu take
impl="auto" | "cuda" | "ref".

`backend()` reports which implementation runs and why. Nothing is built or checked at import.
"""
from priors.ops import _backend, _selfcheck
from priors.ops._backend import backend
from priors.ops.bias_act import bias_act
from priors.ops.conv2d_resample import conv2d_resample
from priors.ops.filtered_lrelu import filtered_lrelu
from priors.ops.modulated_conv2d import modulated_conv2d
from priors.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

_backend.register_self_check(_selfcheck.run)  # the self-check on first CUDA use (see _backend)

__all__ = ["backend", "bias_act", "conv2d_resample", "modulated_conv2d", "upfirdn2d", "filter2d", "upsample2d",
           "downsample2d", "setup_filter", "filtered_lrelu"]
