import numpy as np
import pytest

from datamodules.synthetic import LABELS, make_pair


def test_deterministic_and_seed_dependent():
    a1, b1 = make_pair(0, "train", 3, 64)
    a2, b2 = make_pair(0, "train", 3, 64)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    assert not np.array_equal(make_pair(1, "train", 3, 64)[0], a1)
    assert not np.array_equal(make_pair(0, "val", 3, 64)[0], a1)  # splits are different samples


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_sizes_labels_and_rendering(size):
    a, b = make_pair(0, "train", 0, size)
    assert a.shape == b.shape == (size, size, 3) and a.dtype == b.dtype == np.uint8
    colours = {tuple(c) for c in a.reshape(-1, 3)}
    assert colours <= set(LABELS.values()) and len(colours) >= 5
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 30  # the target is not the label map
    assert len({tuple(c) for c in b.reshape(-1, 3)}) > 50  # textured


def test_bad_size():
    with pytest.raises(ValueError, match="data.synthetic.size"):
        make_pair(0, "train", 0, 100)
