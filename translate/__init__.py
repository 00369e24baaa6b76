"""translate-kit: image-to-image translation (pix2pix, CycleGAN, pSp) on one CLI.

`translate.load_translator(path)` loads an exported bundle for inference; it needs neither Lightning nor the
config system. Submodules are imported only when used, so `import translate` stays light.
"""
__all__ = ["Translator", "load_translator"]


def __getattr__(name):
    if name in __all__:
        from translate.deploy import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'translate' has no attribute '{name}'")
