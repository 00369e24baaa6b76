"""Data modules shared by every method (see datamodules.module). Imported lazily: `datamodules.io` is used by the
inference API, which must not pull in Lightning or albumentations."""
_EXPORTS = ("DATASETS", "DataError", "PairedDataModule", "build_datamodule", "check_config")
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        from datamodules import module

        return getattr(module, name)
    raise AttributeError(f"module 'datamodules' has no attribute '{name}'")
