"""StyleGAN2 prior: ops, generator, loaders. `load_prior(path)` accepts every supported format."""


def load_prior(path):
    from priors.loaders import load_prior as _load

    return _load(path)


__all__ = ["load_prior"]
