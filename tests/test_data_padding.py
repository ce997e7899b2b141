"""pad, collate_padded and BucketBatchSampler: round trips against the unpadded sequences."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rnnkit import ShapeError
from rnnkit.data import BucketBatchSampler, SequenceDataset, collate_padded, pad


def _ragged(n: int = 7, width: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 9, (n,), generator=g).tolist()
    return [torch.randn(size, width, generator=g) for size in sizes]


def test_pad_writes_each_sequence_then_padding() -> None:
    seqs = _ragged()
    data = pad(seqs, padding_value=-1.0)
    longest = max(len(s) for s in seqs)
    assert data.x.shape == (7, longest, 2)
    assert data.lengths is not None
    assert data.lengths.tolist() == [len(s) for s in seqs]
    for i, s in enumerate(seqs):
        assert torch.equal(data.x[i, : len(s)], s)
        assert bool((data.x[i, len(s) :] == -1.0).all())


def test_pad_with_class_labels_and_with_per_step_targets() -> None:
    seqs = _ragged(4)
    labelled = pad(seqs, [2, 0, 1, 2])
    assert labelled.target_kind == "class"
    assert labelled.y is not None
    assert labelled.y.tolist() == [2, 0, 1, 2]
    steps = [torch.randn(len(s)) for s in seqs]
    stepped = pad(seqs, steps)
    assert stepped.target_size == 1
    for i, t in enumerate(steps):
        assert stepped.y is not None
        assert torch.equal(stepped.y[i, : len(t), 0], t)


def test_pad_accepts_univariate_lists_and_arrays() -> None:
    data = pad([[1.0, 2.0, 3.0], np.array([4.0]), torch.tensor([5.0, 6.0])])
    assert data.x[:, :, 0].tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]]
    assert data.input_size == 1


def test_batches_of_a_padded_dataset_unpad_to_the_originals() -> None:
    seqs = _ragged()
    data = pad(seqs, list(range(7)))
    batch = data.batch(torch.tensor([4, 1, 6]))
    assert batch.lengths is not None
    assert batch.x.shape[1] == int(batch.lengths.max())  # trimmed
    for row, i in enumerate([4, 1, 6]):
        assert torch.equal(batch.x[row, : len(seqs[i])], seqs[i])


def test_collate_padded_in_a_dataloader_round_trips() -> None:
    seqs = _ragged(9)
    pairs = [(s, i % 3) for i, s in enumerate(seqs)]
    loader: DataLoader[Any] = DataLoader(pairs, batch_size=4, collate_fn=collate_padded)  # type: ignore[arg-type]
    seen = 0
    for x, y, lengths in loader:
        assert x.dtype == torch.float32
        assert lengths.dtype == torch.int64
        assert lengths.device.type == "cpu"
        assert x.shape[1] == int(lengths.max())
        for row in range(len(x)):
            original, label = pairs[seen + row]
            assert torch.equal(x[row, : int(lengths[row])], original)
            assert int(y[row]) == label
        seen += len(x)
    assert seen == 9


def test_collate_padded_equals_pad_then_batch() -> None:
    seqs = _ragged(5)
    targets = [torch.randn(len(s), 3) for s in seqs]
    collated = collate_padded(list(zip(seqs, targets, strict=True)))
    batched = pad(seqs, targets).batch(torch.arange(5))
    for got, want in zip(collated, batched, strict=True):
        assert got is not None
        assert want is not None
        assert torch.equal(got, want)


def test_collate_padded_over_a_padded_dataset_trims_like_batch() -> None:
    data = pad(_ragged(6), [0, 1, 0, 1, 1, 0])
    samples = [data[i] for i in (5, 2, 3)]
    collated = collate_padded(samples)
    expected = data.batch(torch.tensor([5, 2, 3]))
    assert torch.equal(collated.x, expected.x)
    assert collated.y is not None
    assert expected.y is not None
    assert torch.equal(collated.y, expected.y)
    assert collated.lengths is not None
    assert expected.lengths is not None
    assert torch.equal(collated.lengths, expected.lengths)


def test_collate_padded_padding_value_and_bare_sequences() -> None:
    batch = partial(collate_padded, padding_value=9.0)([torch.ones(1, 2), torch.ones(3, 2)])
    assert batch.y is None
    assert batch.lengths is not None
    assert batch.lengths.tolist() == [1, 3]
    assert batch.x[0, 1:].eq(9.0).all()


@pytest.mark.parametrize(
    ("sequences", "targets", "error", "match"),
    [
        ([], None, ValueError, "at least one sequence"),
        (
            [torch.zeros(2, 3), torch.zeros(0, 3)],
            None,
            ValueError,
            r"`sequences\[1\]` to have at least one step",
        ),
        (
            [torch.zeros(2, 3), torch.zeros(2, 4)],
            None,
            ShapeError,
            r"`sequences\[1\]` to have shape \(L_i, H\) = \(\?, 3\)",
        ),
        ([torch.zeros(2, 3, 1)], None, ShapeError, r"\(L, H\) or \(L,\), but got \(2, 3, 1\)"),
        ([torch.zeros(2, 3)], [0, 1], ValueError, r"N = 1 targets \(one per sequence\), but got 2"),
        ([torch.zeros(2, 3)], [torch.zeros(3, 1)], ShapeError, r"`targets\[0\]` to have 2 steps"),
    ],
)
def test_pad_rejects_bad_input(sequences: list[Any], targets: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        pad(sequences, targets)


def test_collate_padded_rejects_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        collate_padded([])


def test_bucket_sampler_yields_every_index_once_in_batches_of_similar_length() -> None:
    lengths = torch.randint(1, 100, (200,), generator=torch.Generator().manual_seed(0))
    sampler = BucketBatchSampler(lengths, 8, bucket_size=40, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 25
    assert sorted(i for b in batches for i in b) == list(range(200))
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    plain = torch.split(torch.randperm(200, generator=torch.Generator().manual_seed(1)), 8)
    padded_plain = sum(len(b) * int(lengths[b].max()) for b in plain)
    assert padded < 0.8 * padded_plain  # bucketing saves padding


def test_bucket_sampler_without_shuffle_sorts_within_buckets() -> None:
    lengths = [3, 1, 4, 1, 5, 9, 2, 6]
    batches = list(BucketBatchSampler(lengths, 2, shuffle=False, bucket_size=4))
    assert batches == [[2, 0], [1, 3], [5, 7], [4, 6]]


def test_bucket_sampler_is_seeded_by_epoch_and_honours_drop_last() -> None:
    lengths = list(range(1, 22))
    sampler = BucketBatchSampler(lengths, 4, seed=3, drop_last=True)
    first, second = list(sampler), list(sampler)
    assert first != second  # a new order every epoch
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert len(sampler) == len(first) == 5
    assert all(len(b) == 4 for b in first)


def test_bucket_sampler_feeds_a_dataloader_and_the_fast_path() -> None:
    data = pad(_ragged(20), list(range(20)))
    sampler = BucketBatchSampler(data, 4, seed=0)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate_padded)
    sampler.set_epoch(0)
    via_loader = list(loader)
    sampler.set_epoch(0)
    for got, indices in zip(via_loader, sampler, strict=True):
        expected = data.batch(torch.tensor(indices))
        assert torch.equal(got.x, expected.x)


def test_bucket_sampler_on_a_dataset_without_lengths_and_bad_arguments() -> None:
    data = SequenceDataset(torch.zeros(5, 3, 1))
    assert len(BucketBatchSampler(data, 2)) == 3
    with pytest.raises(ValueError, match="`batch_size` >= 1"):
        BucketBatchSampler([1, 2], 0)
    with pytest.raises(ValueError, match="at least one length"):
        BucketBatchSampler([], 2)


def test_pad_with_per_step_class_labels_gives_a_tagging_dataset_like_from_arrays() -> None:
    from rnnkit.data import IGNORE_INDEX, from_arrays

    seqs = _ragged(3)
    g = torch.Generator().manual_seed(1)
    labels = [torch.randint(0, 4, (len(s),), generator=g) for s in seqs]
    data = pad(seqs, labels)
    reference = from_arrays([s.numpy() for s in seqs], [t.numpy() for t in labels], layout="NLC")
    assert data.target_kind == reference.target_kind == "tag"
    assert data.y is not None
    assert reference.y is not None
    assert data.y.shape == (3, max(len(s) for s in seqs))
    assert torch.equal(data.y, reference.y)
    for i, t in enumerate(labels):
        assert torch.equal(data.y[i, : len(t)], t)
        assert bool((data.y[i, len(t) :] == IGNORE_INDEX).all())
    batch = collate_padded([(s, t) for s, t in zip(seqs, labels, strict=True)])
    assert batch.y is not None
    assert torch.equal(batch.y, data.y)
    assert pad(seqs, [t.numpy() for t in labels]).target_kind == "tag"


def test_collate_refuses_lengths_carried_by_some_samples_only() -> None:
    with pytest.raises(ValueError, match="carry its length or none to, but 1 of 2 do"):
        collate_padded([(torch.ones(3, 1), 0, 3), (torch.ones(2, 1), 1)])


@pytest.mark.parametrize(
    ("lengths", "error", "message"),
    [
        ([3, 0, 2], ValueError, r"every length >= 1, but `lengths\[1\]` is 0"),
        ([3, -2], ValueError, r"`lengths\[1\]` is -2"),
        ([2.5, 3.0], TypeError, "to hold integers, but got dtype torch.float32"),
    ],
)
def test_bucket_sampler_refuses_lengths_that_are_no_lengths(
    lengths: list[Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        BucketBatchSampler(lengths, batch_size=2)
