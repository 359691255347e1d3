"""The training data as a function of (seed, step): sample stream, step batches, the one loader, datasets of a config."""
from __future__ import annotations

import os

import pytest
import torch

from reconet_lib import synthetic
from reconet_lib.data import MixedPairs, SintelPairs, SyntheticPairs
from reconet_lib.pairs import PairAugment
from reconet_lib.train import SampleStream, StepBatches, TrainConfig, build_dataset, default_num_workers, make_step_loader

H, W = 40, 48
CONFIG = synthetic.SyntheticConfig(height=H, width=W, frames=4, objects=2, seed=3)


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    """A tiny synthetic dataset in the Sintel layout: 2 scenes of 4 frames at 40 x 48."""
    return synthetic.generate_dataset(tmp_path_factory.mktemp("sintel") / "training", scenes=2, config=CONFIG)


def test_a_sample_depends_only_on_seed_and_its_number(pairs_root):
    def stream():
        augment = PairAugment(crop=(24, 24), flip_probability=0.5, scale_range=(0.8, 1.2))
        return SampleStream(SyntheticPairs(pairs_root, augment=augment, direction="both"), seed=5)

    a, b = stream(), stream()
    forward = [a[n] for n in range(30)]
    torch.manual_seed(123)  # global RNG state must not matter
    backward = [b[n] for n in reversed(range(30))][::-1]
    for x, y in zip(forward, backward):
        assert x["name"] == y["name"] and torch.equal(x["current"], y["current"]) and torch.equal(x["flow"], y["flow"])
    epoch = sorted(a.index_of(n) for n in range(a.epoch_length))
    assert epoch == list(range(a.epoch_length))  # each epoch visits every pair once


def test_the_stream_neither_reads_nor_changes_torchs_global_rng(pairs_root):
    stream = SampleStream(SyntheticPairs(pairs_root, augment=PairAugment(crop=(16, 16), scale_range=(0.8, 1.2))), seed=1)
    state = torch.get_rng_state()
    for n in range(6):
        stream[n]
    assert torch.equal(state, torch.get_rng_state())


def test_epochs_see_new_augmentations_of_the_same_pairs(pairs_root):
    stream = SampleStream(SyntheticPairs(pairs_root, augment=PairAugment(crop=(16, 16), scale_range=(0.7, 1.4))), seed=2)
    n = stream.epoch_length
    by_index = {}
    for m in range(2 * n):
        by_index.setdefault(stream.index_of(m), []).append(stream[m]["current"])
    assert all(len(v) == 2 for v in by_index.values())
    assert any(not torch.equal(a, b) for a, b in by_index.values())


def test_step_batches_give_each_process_its_own_samples():
    rank0 = list(StepBatches(1, 3, batch_size=2, rank=0, world_size=2))
    rank1 = list(StepBatches(1, 3, batch_size=2, rank=1, world_size=2))
    assert rank0 == [[0, 1], [4, 5], [8, 9]] and rank1 == [[2, 3], [6, 7], [10, 11]]
    assert list(StepBatches(3, 3, batch_size=2)) == [[4, 5]]  # a resume at step 3 reads what step 3 read


def test_step_loader_batches_have_the_documented_shapes(pairs_root):
    dataset = MixedPairs(
        [(SyntheticPairs(pairs_root, augment=PairAugment(crop=(16, 20))), 1.0),
         (SyntheticPairs(pairs_root, direction="forward", augment=PairAugment(size=(16, 20))), 1.0)],
        length=4,
    )
    batches = list(make_step_loader(SampleStream(dataset, seed=3), 1, 2, batch_size=2))
    assert len(batches) == 2
    for batch in batches:
        assert batch["current"].shape == batch["previous"].shape == (2, 3, 16, 20)
        assert batch["flow"].shape == (2, 2, 16, 20) and batch["valid"].shape == (2, 1, 16, 20)
        assert batch["current"].dtype == batch["valid"].dtype == torch.float32
        assert isinstance(batch["name"], list) and len(batch["name"]) == 2


def test_step_loader_gives_the_same_batches_with_a_worker_process(pairs_root):
    stream = SampleStream(SintelPairs(pairs_root, augment=PairAugment(crop=(16, 16))), seed=11)
    runs = [[b["current"] for b in make_step_loader(stream, 2, 4, 2, num_workers=workers)] for workers in (0, 1, 1)]
    assert len(runs[0]) == 3  # steps 2..4, one iterator for the whole run (no epochs to restart workers for)
    assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(*runs))


def test_step_loaders_of_two_processes_read_disjoint_samples(pairs_root):
    stream = SampleStream(SintelPairs(pairs_root), seed=0)
    names = [[n for b in make_step_loader(stream, 1, 3, 1, rank=r, world_size=2) for n in b["name"]] for r in (0, 1)]
    assert len(names[0]) == len(names[1]) == 3
    positions = [{stream.index_of(n) for batch in StepBatches(1, 3, 1, r, 2) for n in batch} for r in (0, 1)]
    assert len(stream.dataset) == 6 and not positions[0] & positions[1]  # one epoch, each pair read by one process
    assert {s["name"] for s in (stream.dataset[i] for i in positions[0])} == set(names[0])


def test_default_workers_are_few_on_the_cpu(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_num_workers(cuda=False) == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert default_num_workers(cuda=False) == 2
    assert default_num_workers(cuda=True) == 4


def test_a_config_with_two_sources_gives_a_weighted_mixture(pairs_root):
    config = TrainConfig(data=[{"kind": "synthetic", "path": str(pairs_root), "weight": 3},
                               {"kind": "sintel", "path": str(pairs_root)}], crop=(16, 16))
    dataset = build_dataset(config)
    assert isinstance(dataset, MixedPairs) and list(dataset.probabilities) == [0.75, 0.25]
