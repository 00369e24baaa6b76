"""Training order per epoch from the seed, and a loader that resumes mid-epoch without reading skipped images."""
import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler

from datamodules.sampling import EpochRandomSampler, ResumableDataLoader


class Recording(Dataset):
    """Items are their indices; remembers which were read."""

    def __init__(self, n: int):
        self.n, self.read = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.read.append(i)
        return i


def epochs(loader, n):
    return [[b.tolist() for b in loader] for _ in range(n)]


def test_order_is_a_permutation_per_epoch_from_the_seed():
    data = range(10)
    s = EpochRandomSampler(data, seed=3)
    e0 = list(s)
    assert sorted(e0) == list(range(10)) and list(s) == e0  # drawn again, same order
    s.set_epoch(1)
    assert list(s) != e0 and sorted(s) == list(range(10))
    assert list(EpochRandomSampler(data, seed=4)) != e0


@pytest.mark.parametrize("done", [0, 1, 2])
def test_resumed_loader_skips_the_batches_done_without_reading_them(done):
    whole = ResumableDataLoader(Recording(10), batch_size=3, sampler=EpochRandomSampler(range(10), seed=0))
    first, second = epochs(whole, 2)
    resumed_data = Recording(10)
    resumed = ResumableDataLoader(resumed_data, batch_size=3, sampler=EpochRandomSampler(range(10), seed=0))
    resumed.load_state_dict({"epoch": 0, "batches": done})
    rest = [b.tolist() for b in resumed]
    assert rest == first[done:]
    assert sorted(resumed_data.read) == sorted(i for b in first[done:] for i in b)  # the skipped ones never read
    assert resumed.state_dict() == {"epoch": 0, "batches": len(first), "images": 12, "epoch_batches": len(first)}
    assert [b.tolist() for b in resumed] == second  # the next epoch whole, in its own order


def test_a_loader_made_for_a_later_epoch_starts_there():
    """The data module makes the loader of a run resumed at an epoch's end with its sampler at the next epoch."""
    e0, e1, e2 = epochs(ResumableDataLoader(Recording(6), batch_size=2, sampler=EpochRandomSampler(range(6))), 3)
    later = ResumableDataLoader(Recording(6), batch_size=2, sampler=EpochRandomSampler(range(6)))
    later.first_epoch = 1
    assert epochs(later, 2) == [e1, e2] and later.state_dict() == {"epoch": 2, "batches": 3, "images": 6,
                                                                 "epoch_batches": 3}


def test_state_counts_the_batches_handed_out():
    loader = ResumableDataLoader(Recording(8), batch_size=2, sampler=EpochRandomSampler(range(8)))
    assert loader.state_dict() == {"epoch": 0, "batches": 0, "images": 0, "epoch_batches": 4}
    it = iter(loader)
    next(it), next(it)
    assert loader.state_dict() == {"epoch": 0, "batches": 2, "images": 4, "epoch_batches": 4}
    list(it)
    list(loader)
    assert loader.state_dict() == {"epoch": 1, "batches": 4, "images": 8, "epoch_batches": 4}


def test_resumed_at_an_epochs_end_starts_the_next_epoch_once():
    """Lightning may open a pass for the finished epoch's (empty) rest and never draw from it, or use it for the
    next epoch: either way the next epoch's order comes once."""
    make = lambda: ResumableDataLoader(Recording(6), batch_size=2, sampler=EpochRandomSampler(range(6)))  # noqa: E731
    e0, e1, e2 = epochs(make(), 3)
    for draws_from_first_pass in (False, True):
        loader = make()
        loader.load_state_dict({"epoch": 0, "batches": 3})
        it = iter(loader)
        got = [[b.tolist() for b in it]] if draws_from_first_pass else []
        got += epochs(loader, 3 - len(got))
        assert got == [e1, e2, epochs(make(), 4)[3]]


def test_resumed_at_the_end_of_a_limited_epoch_starts_the_next_epoch():
    """trainer.limit_train_batches=2 of 3: Lightning closes the resumed epoch without drawing from it."""
    make = lambda: ResumableDataLoader(Recording(6), batch_size=2, sampler=EpochRandomSampler(range(6)))  # noqa: E731
    e0, e1 = epochs(make(), 2)
    loader = make()
    loader.load_state_dict({"epoch": 0, "batches": 2})
    iter(loader)
    assert epochs(loader, 1) == [e1]


def test_under_ddp_the_distributed_sampler_follows_the_loaders_epochs():
    data = Recording(8)
    sampler = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=5)
    loader = ResumableDataLoader(data, batch_size=2, sampler=sampler)
    first = iter(loader)
    sampler.set_epoch(7)  # Lightning sets its own count after the first pass was opened: the loader's wins
    got = [[b.tolist() for b in first]] + epochs(loader, 1)
    for epoch, batches in enumerate(got):
        ref = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=5)
        ref.set_epoch(epoch)
        assert [i for b in batches for i in b] == list(ref)
    resumed = ResumableDataLoader(data, batch_size=2, sampler=DistributedSampler(data, 2, 1, seed=5))
    resumed.load_state_dict({"epoch": 1, "batches": 1})
    assert [b.tolist() for b in resumed] == got[1][1:]


def test_workers_are_seeded_per_epoch_without_the_global_generator():
    def draws(loader):
        return [b.tolist() for b in loader]

    class Noisy(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(1).item()

    # (persistent workers would continue their own generators from epoch to epoch instead)
    make = lambda: ResumableDataLoader(Noisy(), batch_size=2, num_workers=1,  # noqa: E731
                                       generator=torch.Generator().manual_seed(1))
    a = make()
    state = torch.get_rng_state()
    a0, a1 = draws(a), draws(a)
    assert torch.equal(torch.get_rng_state(), state)  # starting passes drew nothing from the global generator
    assert a0 != a1
    b = make()
    b.load_state_dict({"epoch": 1, "batches": 0})
    assert draws(b) == a1  # epoch 1's augmentations, however many passes this process made before


@pytest.mark.parametrize("before, after", [((1, 2), (2, 2)), ((2, 2), (1, 4)), ((1, 3), (1, 2))])
def test_resumed_with_other_processes_or_batch_size_skips_the_images_taken(before, after):
    """(processes, batch size) before and after: one global permutation, dealt to the processes, so the resumed
    run takes the images the interrupted one did not (rounded down to whole minibatches)."""
    data = range(24)

    def loaders(processes, batch_size):
        if processes == 1:
            return [ResumableDataLoader(Recording(24), batch_size=batch_size,
                                        sampler=EpochRandomSampler(data, seed=5))]
        return [ResumableDataLoader(Recording(24), batch_size=batch_size,
                                    sampler=DistributedSampler(data, processes, rank, seed=5))
                for rank in range(processes)]

    interrupted = loaders(*before)
    taken = []
    for loader in interrupted:
        it = iter(loader)
        taken += [i for _ in range(2) for i in next(it).tolist()]  # 2 minibatches each
    state = interrupted[0].state_dict()
    rest = []
    for loader in loaders(*after):
        loader.load_state_dict(state)
        rest += [i for b in loader for i in b.tolist()]
    assert sorted(taken + rest) == list(range(24))
