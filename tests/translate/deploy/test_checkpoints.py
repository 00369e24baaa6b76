import os

import pytest
import torch

from translate.deploy.checkpoints import CheckpointError, atomic_torch_save, load_checkpoint


def test_atomic_save_round_trip_and_no_temp_left(tmp_path):
    p = tmp_path / "sub" / "a.ckpt"
    atomic_torch_save({"w": torch.arange(3)}, p)
    assert torch.equal(load_checkpoint(p)["w"], torch.arange(3))
    assert os.listdir(p.parent) == ["a.ckpt"]


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_saved_files_get_the_umask_permissions_not_the_temp_files(tmp_path, umask_027):
    """mkstemp makes 0600 files: a checkpoint, prior or code written through it must still be readable by the
    group as any new file would be (here umask 027: 0640), and a replaced file keeps its own mode."""
    from safeio import write_atomic

    p = tmp_path / "a.ckpt"
    atomic_torch_save({"v": 1}, p)
    assert p.stat().st_mode & 0o777 == 0o640
    p.chmod(0o604)
    atomic_torch_save({"v": 2}, p)
    assert p.stat().st_mode & 0o777 == 0o604 and load_checkpoint(p)["v"] == 2
    write_atomic(tmp_path / "new" / "b.json", lambda tmp: open(tmp, "w").write("{}"))
    assert (tmp_path / "new" / "b.json").stat().st_mode & 0o777 == 0o640


def test_failed_save_keeps_the_old_file(tmp_path):
    p = tmp_path / "a.ckpt"
    atomic_torch_save({"v": 1}, p)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"v": Boom()}, p)
    assert load_checkpoint(p)["v"] == 1
    assert os.listdir(tmp_path) == ["a.ckpt"]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_checkpoints_that_execute_code(tmp_path):
    p = tmp_path / "evil.ckpt"
    with open(p, "wb") as f:
        torch.save({"state_dict": {}, "x": Evil()}, f)
    with pytest.raises(CheckpointError, match=r"weights_only.*needs code to unpickle \((posix|nt)\.system\), which "
                                              r"is refused$") as err:
        load_checkpoint(p)
    assert "weights_only` set to `False`" not in str(err.value)  # never torch's advice to run the code
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}}, tmp_path / "run" / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match=r"run is a folder; expected a checkpoint file, e.g. .*run/checkpoints/"
                                              r"last.ckpt"):
        load_checkpoint(tmp_path / "run")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"hello world\n", b"PK\x03\x04truncated"])
def test_empty_or_garbage_files_name_the_file(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"cannot load checkpoint .*bad.ckpt safely.*not a readable PyTorch"
                                              r" file, or a truncated one \(\w+(: .+)?\)$") as err:
        load_checkpoint(path)
    assert "Re-running" not in str(err.value) and "Please file an issue" not in str(err.value)


def test_a_long_load_error_is_shortened_at_a_word_boundary():
    """A truncated checkpoint's error used to quote its cause cut off mid-word (the first 120 characters)."""
    from safeio import torch_load_failure

    words = [f"word{i:03d}" for i in range(60)]
    text = torch_load_failure(RuntimeError(" ".join(words)))
    detail = text.split("RuntimeError: ", 1)[1].rstrip(")")
    assert detail.endswith(" ...") and len(detail) <= 160
    assert all(w in words for w in detail[: -len(" ...")].split())  # whole words only
