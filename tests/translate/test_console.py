"""What the command line prints: our warnings as one clean line, known library chatter filtered."""
import logging
import warnings

from datamodules.transforms import RoundToMultiple
from translate import console


def test_our_warnings_are_one_line_and_library_warnings_keep_their_format():
    console.setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RoundToMultiple(64).size(250, 250)  # warns from datamodules/transforms.py
    (w,) = caught
    text = warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
    assert text == ("warning: images of 250x250 are resized to 256x256: sides must be multiples of 64 "
                    "(data.size_multiple, raised to the generator's multiple)\n")
    other = warnings.formatwarning(UserWarning("x"), UserWarning, logging.__file__, 1, None)
    assert logging.__file__ in other and "UserWarning" in other


def test_images_that_fit_are_not_warned_about():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert RoundToMultiple(64).size(128, 64) == (128, 64)
    assert caught == []


def test_known_library_chatter_is_filtered(caplog):
    console.setup()
    with warnings.catch_warnings(record=True) as caught:
        console.setup()  # catch_warnings resets the filters
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`")
    assert caught == []
    with caplog.at_level(logging.INFO):
        logging.getLogger("pytorch_lightning.utilities.rank_zero").info("💡 Tip: try installing [litlogger]")
        logging.getLogger("pytorch_lightning.utilities.rank_zero").info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False"]


def test_setting_up_again_after_lightning_replaced_the_format_makes_no_loop():
    """Lightning, imported after setup(), installs a format that hands other files on to ours: a second setup()
    must not hand ours on to it in turn (that recursed forever)."""
    console.setup()
    ours = warnings.formatwarning

    def lightning_like(message, category, filename, lineno, line=None):
        return ours(message, category, filename, lineno, line)

    warnings.formatwarning = lightning_like
    try:
        console.setup()
        assert "x" in warnings.formatwarning(UserWarning("x"), UserWarning, logging.__file__, 1, None)
    finally:
        warnings.formatwarning = ours
