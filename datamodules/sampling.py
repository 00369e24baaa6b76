"""Training batches that a resumed run continues where the interrupted one stopped, mid-epoch included.

Lightning restores the step counters, weights and optimizers of a checkpoint saved mid-epoch, but a plain
DataLoader starts its epoch over, in a new random order: some images are seen twice in that epoch, others never
(Lightning warns "your dataloader is not resumable"). Long step-based runs (pSp trains 500k minibatches and saves
every few thousand) are resumed mid-epoch nearly every time. Here:

- `EpochRandomSampler` shuffles with a generator seeded by seed + epoch, so an epoch's order can be drawn again.
  It is the permutation torch's DistributedSampler draws with the same seed, which under DDP deals it out to the
  processes: one global order however many processes train.
- `ResumableDataLoader` is a DataLoader with the `state_dict`/`load_state_dict` pair Lightning saves into the
  checkpoint: the epoch and how many batches (and images) of it were handed out. Loading it makes the next pass
  draw that epoch's order and skip those batches by index: no skipped image is read or augmented.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, Iterator

import torch
from torch.utils.data import DataLoader, RandomSampler


class EpochRandomSampler(RandomSampler):
    """A permutation per epoch, seeded by `seed + epoch` (DistributedSampler's rule); ResumableDataLoader sets the
    epoch as each pass starts."""

    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=g).tolist())


class _Pass:
    """The batches of indices of one pass: the first `skip` are left out (a resumed epoch), and the order is drawn
    as the pass starts, from the epoch the loader set. (A BatchSampler would draw it at the first batch, after
    Lightning's own `set_epoch`, whose count shifts when a run stopped by max_steps is resumed.) Its length stays
    the whole epoch's: Lightning counts a resumed epoch's skipped batches as done itself."""

    def __init__(self, batches, loader: "ResumableDataLoader"):
        self.batches, self.loader = batches, loader

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        rest = itertools.islice(iter(self.batches), self.loader._skipped, None)
        first = next(rest, None)  # draws the order now
        return iter(()) if first is None else itertools.chain([first], rest)


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position in the epoch goes into Lightning's checkpoints (see the module docstring).

    It counts its own epochs (passes), from `first_epoch` (a run resumed at an epoch's end starts with the next),
    and sets the sampler's epoch from that count as each pass starts. The state is
    taken as batches are handed to the training loop, so it holds at any checkpoint: after a batch
    (`checkpoint.every_n_train_steps`), after validation, at the end of an epoch or of training. Random augmentations
    of the rest of the epoch are drawn afresh (the runner restores the random generators of a single-process run, so
    with `data.num_workers=0` a resumed run repeats the uninterrupted one exactly)."""

    _epoch = 0  # the current pass
    first_epoch = 0  # the first pass's epoch unless resumed mid-epoch (after an epoch's end: the next); set by the
    # data module
    limit_batches = None  # trainer.limit_train_batches (an int, or a fraction of the epoch), set by the data module
    _resume = None  # (epoch, batches done) for the next pass, set by load_state_dict
    _skipped = 0  # batches the current pass left out
    _live = None  # the current pass's iterator
    _generator_seed = None  # the seed the loader's generator was made with

    @property
    def _index_sampler(self):
        return _Pass(super()._index_sampler, self)

    def __iter__(self):
        if self._resume is not None:
            self._epoch, self._skipped = self._resume
        elif self._live is None:  # the first pass, not resumed mid-epoch
            self._epoch, self._skipped = self.first_epoch, 0
        elif self._served() > 0 or self._skipped > 0:
            self._epoch, self._skipped = self._epoch + 1, 0
        # else the last pass was opened for the next epoch and never drawn from (resumed at an epoch's end,
        # Lightning closed that epoch without a batch): this pass is the same one. (A resumed pass that Lightning
        # closes undrawn ended its epoch early, at trainer.limit_train_batches: the next epoch follows.)
        self._resume = None
        if hasattr(self.sampler, "set_epoch"):  # ours, or the DistributedSampler under DDP
            self.sampler.set_epoch(self._epoch)
        if self.generator is not None:  # the workers' seeds: per epoch, and never drawn from the global generator
            if self._generator_seed is None:
                self._generator_seed = self.generator.initial_seed()
            self.generator.manual_seed(self._generator_seed + self._epoch)
        # persistent workers keep one iterator, whose _Pass reads the epoch and skip again at every pass
        self._live = super().__iter__()
        return self._live

    def _served(self) -> int:
        return getattr(self._live, "_num_yielded", 0) if self._live is not None else 0

    def _epoch_batches(self) -> int:
        """Minibatches Lightning takes of an epoch: all, or trainer.limit_train_batches of them (its rule)."""
        limit = self.limit_batches
        if isinstance(limit, float) and limit != 1.0:
            return int(len(self) * limit)
        return min(len(self), limit) if isinstance(limit, int) else len(self)

    def _images_per_step(self) -> int:
        """Images one minibatch of every process takes together (batch size x processes)."""
        return (self.batch_size or 1) * int(getattr(self.sampler, "num_replicas", 1))

    def state_dict(self) -> Dict[str, Any]:
        done = self._skipped + self._served()
        return {"epoch": self._epoch, "batches": done, "images": done * self._images_per_step(),
                "epoch_batches": self._epoch_batches()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches"])
        if "images" in state and state["images"] != done * self._images_per_step():
            # resumed with another batch size or number of processes: the epoch's permutation is the same (ours
            # and DistributedSampler's are both randperm(seed + epoch), which DDP deals out to the processes), so
            # skip the images taken; rounded down, a few are seen twice rather than some never
            done = int(state["images"]) // self._images_per_step()
        if done >= self._epoch_batches():  # saved as the epoch ended: the next one starts from its beginning
            epoch, done = epoch + 1, 0
        self._resume = (epoch, done)


__all__ = ["EpochRandomSampler", "ResumableDataLoader"]
