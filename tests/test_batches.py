"""The Trainer's indexed batches: several gathered at once, each equal to its own gather."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from rnnkit.data import Batch, SequenceDataset
from rnnkit.training import _batches
from rnnkit.training._batches import MAX_GROUP, IndexedSource


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _images() -> SequenceDataset:
    x = torch.randint(0, 256, (70, 6, 5), dtype=torch.uint8, generator=_gen())
    y = torch.randint(0, 10, (70,), generator=_gen())
    return SequenceDataset(x, y, scale=1 / 255, mean=0.13, std=0.31)


def _series() -> SequenceDataset:
    x = torch.randn(70, 6, 2, generator=_gen(), dtype=torch.float64)
    return SequenceDataset(x, x[:, :, :1] * 2)


def _inputs_only() -> SequenceDataset:
    return SequenceDataset(torch.randn(70, 6, 3, generator=_gen()))


def _padded() -> SequenceDataset:
    x = torch.randn(70, 6, 3, generator=_gen())
    return SequenceDataset(x, torch.arange(70) % 3, torch.randint(1, 7, (70,), generator=_gen()))


def _short_targets() -> SequenceDataset:
    x = torch.randn(70, 6, 2, generator=_gen())
    return SequenceDataset(x, x[:, -3:, :1].clone())  # L_y = 3 of L = 6


DATASETS: dict[str, Callable[[], SequenceDataset]] = {
    "uint8 images, normalised": _images,
    "float64 series, per-step targets": _series,
    "per-step targets shorter than x": _short_targets,
    "inputs only": _inputs_only,
    "padded": _padded,
}


def _parts(n: int, size: int) -> list[Tensor]:
    return list(torch.split(torch.randperm(n, generator=_gen()), size))


def _assert_same_batch(got: Batch, want: Batch) -> None:
    for a, b in zip(got, want, strict=True):
        if b is None:
            assert a is None
        else:
            assert a is not None
            assert a.shape == b.shape
            assert a.dtype == b.dtype
            assert torch.equal(a, b)


def _count_gathers(monkeypatch: pytest.MonkeyPatch, data: SequenceDataset) -> list[int]:
    """Record the number of sequences of every ``data.batch`` call."""
    sizes: list[int] = []
    original = data.batch

    def counting(indices: Tensor) -> Batch:
        sizes.append(int(indices.numel()))
        return original(indices)

    monkeypatch.setattr(data, "batch", counting)
    return sizes


@pytest.mark.parametrize("make", DATASETS.values(), ids=list(DATASETS))
def test_grouped_batches_equal_one_gather_per_batch(make: Callable[[], SequenceDataset]) -> None:
    data = make()
    parts = _parts(len(data), 4)  # 18 batches, the last of 2 sequences: two groups
    got = list(IndexedSource(data, "train").gather(parts))
    assert len(got) == len(parts)
    for batch, part in zip(got, parts, strict=True):
        _assert_same_batch(batch, data.batch(part))


def test_up_to_max_group_batches_share_one_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _images()
    sizes = _count_gathers(monkeypatch, data)
    batches = list(IndexedSource(data, "train").gather(_parts(len(data), 2)))
    assert len(batches) == 35
    assert sizes == [2 * MAX_GROUP, 2 * MAX_GROUP, 70 - 4 * MAX_GROUP]
    assert [b.x.shape[0] for b in batches] == [2] * 35


def test_large_batches_are_gathered_fewer_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _images()  # a sample is 6 steps x 5 features x 4 bytes = 120 bytes of input
    monkeypatch.setattr(_batches, "GROUP_BYTES", 3 * 10 * 120)
    sizes = _count_gathers(monkeypatch, data)
    list(IndexedSource(data, "train").gather(_parts(len(data), 10)))
    assert sizes == [30, 30, 10]
    monkeypatch.setattr(_batches, "GROUP_BYTES", 10 * 120 - 1)
    sizes.clear()
    list(IndexedSource(data, "train").gather(_parts(len(data), 10)))
    assert sizes == [10] * 7


def test_padded_batches_are_gathered_and_trimmed_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _padded()
    sizes = _count_gathers(monkeypatch, data)
    parts = _parts(len(data), 8)
    batches = list(IndexedSource(data, "train").gather(parts))
    assert sizes == [8] * 8 + [6]
    assert data.lengths is not None
    for batch, part in zip(batches, parts, strict=True):
        assert batch.x.shape[1] == int(data.lengths[part].max())


def test_a_kept_batch_stays_the_same_while_later_ones_are_gathered() -> None:
    data = _images()
    batches = IndexedSource(data, "train").gather(_parts(len(data), 2))
    kept = next(batches)
    copy = kept.x.clone()
    assert kept.x.untyped_storage().nbytes() == 32 * kept.x[0].numel() * 4  # a group's view
    rest = list(batches)
    assert len(rest) == 34
    assert torch.equal(kept.x, copy)


def test_nothing_to_gather_gives_no_batch() -> None:
    """An empty part of the data (a DDP rank's share of a small set), or a start past the end."""
    source = IndexedSource(_images(), "val")
    assert list(source.batches(8, torch.empty(0, dtype=torch.long))) == []
    assert list(source.batches(8, start=9)) == []  # 70 sequences: 9 batches, start at the end
    assert list(source.batches(8, start=10)) == []  # past it
    assert list(source.gather([])) == []


def test_batches_from_a_start_position_skip_whole_batches() -> None:
    data = _series()
    source = IndexedSource(data, "val")
    order = torch.randperm(len(data), generator=_gen())
    got = list(source.batches(8, order, start=3))
    want = [data.batch(part) for part in torch.split(order, 8)[3:]]
    assert len(got) == len(want) == 6
    for batch, expected in zip(got, want, strict=True):
        _assert_same_batch(batch, expected)
