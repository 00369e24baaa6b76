"""StyleGAN priors: ops (priors.ops), the StyleGAN2 generator and discriminator (priors.stylegan2), the StyleGAN3
generator (priors.stylegan3), loaders (priors.loaders).

`load_prior(path)` reads every supported format (ours, NVIDIA .pt / .pkl of StyleGAN2 or StyleGAN3, rosinality /
pSp .pt). The names below
are imported on first use, so that `import priors.ops` stays light.
"""
from importlib import import_module

_EXPORTS = {
    "load_prior": "priors.loaders", "save_prior": "priors.loaders", "convert_prior": "priors.loaders",
    "PriorLoadError": "priors.loaders", "load_discriminator": "priors.loaders",
    "Generator": "priors.stylegan2", "GeneratorConfig": "priors.stylegan2",
    "Discriminator": "priors.stylegan2", "DiscriminatorConfig": "priors.stylegan2",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'priors' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
