"""Data modules shared by every method.

    from datamodules import DATASETS, build_datamodule   # DATASETS: data.kind -> Dataset class
    dm = build_datamodule(cfg.data)                      # a LightningDataModule; batches {"A", "B", "A_path"}

The registry and the LightningDataModule live in `datamodules.module` and are imported on first use: the inference
API imports `datamodules.io` (numpy + PIL only), which must not pull in torch, Lightning or albumentations.
"""
_EXPORTS = ("DATASETS", "DataError", "PairedDataModule", "build_datamodule", "check_config")
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        from datamodules import module

        return getattr(module, name)
    raise AttributeError(f"module 'datamodules' has no attribute '{name}'")
