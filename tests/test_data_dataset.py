"""SequenceDataset and Batch: storage, per-batch conversion, the map-style protocol, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rnnkit import ShapeError
from rnnkit.data import Batch, SequenceDataset


def _pixels(n: int = 10, seq_len: int = 6, width: int = 4) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, seq_len, width), dtype=torch.uint8)


def test_batch_fields_are_x_y_lengths_in_that_order() -> None:
    assert Batch._fields == ("x", "y", "lengths")
    x = torch.zeros(2, 3, 1)
    assert Batch(x) == (x, None, None)


def test_uint8_stays_uint8_and_nbytes_counts_the_compact_storage() -> None:
    x = _pixels(10, 6, 4)
    data = SequenceDataset(x, torch.arange(10), scale=1 / 255)
    assert data.x.dtype == torch.uint8
    assert data.x.data_ptr() == x.data_ptr()  # no copy
    assert data.nbytes == 10 * 6 * 4 * 1 + 10 * 8


def test_scale_1_over_255_is_bitwise_the_division_totensor_does() -> None:
    x = torch.arange(256, dtype=torch.uint8).reshape(16, 4, 4)
    got = SequenceDataset(x, scale=1 / 255).batch(torch.arange(16)).x
    assert got.dtype == torch.float32
    assert torch.equal(got, x.float().div(255))


def test_scale_mean_std_follow_the_documented_formula() -> None:
    x = _pixels(8, 5, 3)
    mean, std = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 2.0, 4.0])
    data = SequenceDataset(x, scale=0.5, mean=mean, std=std)
    expected = ((x.float() * 0.5) - mean) / std
    torch.testing.assert_close(data.batch(torch.arange(8)).x, expected)
    assert data.mean is not None
    assert data.mean.shape == (3,)


def test_scalar_mean_and_std_broadcast_to_every_feature() -> None:
    x = torch.randn(4, 3, 2)
    data = SequenceDataset(x, mean=1.0, std=2.0)
    torch.testing.assert_close(data.batch([0, 1, 2, 3]).x, (x - 1.0) / 2.0)


def test_batch_gathers_the_requested_samples_in_order() -> None:
    x = torch.randn(10, 4, 2)
    y = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    data = SequenceDataset(x, y)
    idx = torch.tensor([7, 0, 7, 3])
    got = data.batch(idx)
    assert torch.equal(got.x, x[idx])
    assert got.y is not None
    assert torch.equal(got.y, y[idx])
    assert got.lengths is None
    assert torch.equal(data.batch([7, 0, 7, 3]).x, got.x)


def test_batch_does_not_modify_float_storage() -> None:
    x = torch.randn(5, 3, 2)
    kept = x.clone()
    data = SequenceDataset(x, mean=1.0, std=3.0)
    data.batch(torch.arange(5))
    data[2]
    assert torch.equal(data.x, kept)


def test_properties_describe_class_targets() -> None:
    data = SequenceDataset(torch.randn(6, 5, 3), torch.tensor([0, 2, 1, 0, 2, 2]))
    assert (len(data), data.seq_len, data.input_size) == (6, 5, 3)
    assert data.target_kind == "class"
    assert data.num_classes == 3
    assert data.target_size is None
    assert (
        SequenceDataset(torch.randn(2, 5, 3), torch.tensor([0, 1]), num_classes=10).num_classes
        == 10
    )


def test_properties_describe_step_targets_and_no_targets() -> None:
    step = SequenceDataset(torch.randn(4, 5, 2), torch.randn(4, 5, 3))
    assert (step.target_kind, step.num_classes, step.target_size) == ("step", None, 3)
    bare = SequenceDataset(torch.randn(4, 5, 2))
    assert (bare.target_kind, bare.num_classes) == (None, None)
    assert bare.batch([1]).y is None


def test_float64_inputs_are_stored_as_float32() -> None:
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    data = SequenceDataset(x, x.copy())
    assert data.x.dtype == torch.float32
    assert data.y is not None
    assert data.y.dtype == torch.float32
    torch.testing.assert_close(data.batch([0, 1, 2]).x, torch.from_numpy(x).float())


def test_getitem_returns_the_present_fields_of_one_sample() -> None:
    x, y = torch.randn(4, 3, 2), torch.tensor([1, 0, 1, 1])
    lengths = torch.tensor([3, 1, 2, 3])
    assert len(SequenceDataset(x)[1]) == 1
    xi, yi = SequenceDataset(x, y)[2]
    assert torch.equal(xi, x[2])
    assert int(yi) == 1
    xi, yi, li = SequenceDataset(x, y, lengths)[1]
    assert xi.shape == (3, 2)
    assert int(li) == 1
    assert torch.equal(SequenceDataset(x, y)[-1][0], x[3])
    with pytest.raises(IndexError, match=r"`index` in \[-\d+, \d+\)"):
        SequenceDataset(x)[4]


def test_a_plain_dataloader_yields_the_same_batches_as_batch() -> None:
    x = _pixels(10, 6, 4)
    y = torch.arange(10) % 3
    data = SequenceDataset(x, y, scale=1 / 255, mean=0.5, std=0.25)
    loader = DataLoader(data, batch_size=4, shuffle=False)
    for step, (xb, yb) in enumerate(loader):
        expected = data.batch(torch.arange(step * 4, min(step * 4 + 4, 10)))
        assert torch.equal(xb, expected.x)
        assert expected.y is not None
        assert torch.equal(yb, expected.y)


def test_padded_batches_are_trimmed_to_their_longest_sequence() -> None:
    x, y = torch.randn(4, 6, 2), torch.randn(4, 6, 1)
    lengths = torch.tensor([6, 2, 3, 1])
    data = SequenceDataset(x, y, lengths)
    got = data.batch(torch.tensor([1, 3]))
    assert torch.equal(got.x, x[[1, 3], :2])
    assert got.y is not None
    assert torch.equal(got.y, y[[1, 3], :2])
    assert got.lengths is not None
    assert got.lengths.tolist() == [2, 1]
    assert got.lengths.dtype == torch.int64
    assert got.lengths.device.type == "cpu"


def test_targets_of_another_length_are_not_trimmed() -> None:
    data = SequenceDataset(torch.randn(3, 5, 2), torch.randn(3, 1, 2), torch.tensor([2, 3, 1]))
    got = data.batch([0, 2])
    assert got.x.shape == (2, 2, 2)
    assert got.y is not None
    assert got.y.shape == (2, 1, 2)


def test_split_by_fraction_is_a_seeded_partition() -> None:
    x = torch.arange(20.0).reshape(20, 1, 1)
    data = SequenceDataset(x, torch.arange(20) % 4, scale=2.0)
    train, val = data.split(0.8, seed=3)
    assert (len(train), len(val)) == (16, 4)
    seen = torch.cat([train.x.flatten(), val.x.flatten()]).sort().values
    assert torch.equal(seen, torch.arange(20.0))
    again, _ = data.split(0.8, seed=3)
    other, _ = data.split(0.8, seed=4)
    assert torch.equal(again.x, train.x)
    assert not torch.equal(other.x, train.x)
    assert train.scale == 2.0
    assert train.num_classes == 4
    assert train.y is not None
    assert torch.equal(train.y, train.x.flatten().long() % 4)  # pairs stay together


def test_split_by_sizes_and_subset_keep_lengths_and_conversion() -> None:
    data = SequenceDataset(torch.randn(5, 4, 1), None, torch.tensor([4, 1, 2, 3, 4]), mean=1.0)
    first, second = data.split((2, 3))
    assert (len(first), len(second)) == (2, 3)
    sub = data.subset([3, 1])
    assert sub.lengths is not None
    assert sub.lengths.tolist() == [3, 1]
    torch.testing.assert_close(sub.batch([0]).x, data.batch([3]).x)


@pytest.mark.parametrize(
    ("arg", "error", "match"),
    [
        (0.0, ValueError, r"in \(0, 1\)"),
        (1.0, ValueError, r"in \(0, 1\)"),
        (0.01, ValueError, "leaves a part empty"),
        ((3, 3), ValueError, "add up to 10"),
        ((10, 0), ValueError, ">= 1"),
        ("half", TypeError, "a float in"),
    ],
)
def test_split_rejects_bad_fractions_and_sizes(arg: object, error: type, match: str) -> None:
    data = SequenceDataset(torch.randn(10, 2, 1))
    with pytest.raises(error, match=match):
        data.split(arg)  # type: ignore[arg-type]


def test_to_moves_inputs_targets_and_statistics_but_keeps_lengths_on_cpu() -> None:
    data = SequenceDataset(
        _pixels(3, 4, 2), torch.tensor([0, 1, 0]), torch.tensor([4, 2, 3]), scale=1 / 255, std=2.0
    )
    moved = data.to("meta")  # a device without memory: shows where each tensor goes
    assert moved.device.type == "meta"
    assert moved.x.device.type == "meta"
    assert moved.std is not None
    assert moved.std.device.type == "meta"
    batch = moved.batch(torch.tensor([0, 2]))
    assert batch.x.device.type == "meta"
    assert batch.y is not None
    assert batch.y.device.type == "meta"
    assert batch.lengths is not None
    assert batch.lengths.device.type == "cpu"
    assert batch.x.shape == (2, 4, 2)
    assert data.device.type == "cpu"  # the original is unchanged


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"x": torch.randn(4, 5)},
            ShapeError,
            r"Expected `x` to have shape \(N, L, H_in\), but got \(4, 5\)",
        ),
        ({"x": torch.randn(0, 5, 2)}, ValueError, r"non-empty `x`"),
        ({"x": [[1.0]]}, TypeError, "torch.Tensor or numpy.ndarray"),
        ({"x": torch.zeros(2, 3, 1, dtype=torch.bool)}, TypeError, "real numbers"),
        ({"y": torch.tensor([0, 1, 2])}, ShapeError, r"N = 4, one target per sequence"),
        ({"y": torch.randn(4, 5)}, ShapeError, r"\(N,\) for class indices"),
        ({"y": torch.tensor([0.0, 1.0, 1.0, 0.0])}, TypeError, "to be integers"),
        (
            {"y": torch.tensor([0, 1, -1, 0])},
            ValueError,
            r"\[0, num_classes\), but got -1 at index 2",
        ),
        (
            {"y": torch.tensor([0, 1, 3, 0]), "num_classes": 3},
            ValueError,
            r"\[0, 3\), but got 3 at index 2",
        ),
        ({"lengths": torch.tensor([5, 1, 6, 2])}, ValueError, r"`lengths\[2\]` is 6"),
        ({"lengths": torch.tensor([5, 1, 0, 2])}, ValueError, r"`lengths\[2\]` is 0"),
        ({"lengths": torch.tensor([5, 1])}, ShapeError, r"shape \(N,\) = \(4,\)"),
        ({"lengths": torch.tensor([5.0, 1, 1, 2])}, TypeError, "integers"),
        ({"scale": -1.0}, ValueError, "`scale` to be positive"),
        ({"std": 0.0}, ValueError, "`std` to be positive"),
        ({"mean": [0.0, 1.0, 2.0]}, ValueError, "H_in = 2 numbers"),
        (
            {"num_classes": 0, "y": torch.tensor([0, 0, 0, 0])},
            ValueError,
            "`num_classes` >= 1",
        ),
    ],
)
def test_bad_input_raises_clear_errors(kwargs: dict[str, object], error: type, match: str) -> None:
    args: dict[str, object] = {"x": torch.randn(4, 5, 2)}
    args.update(kwargs)
    x = args.pop("x")
    with pytest.raises(error, match=match):
        SequenceDataset(x, **args)  # type: ignore[arg-type]


def test_non_finite_values_are_flagged_with_the_first_index() -> None:
    x = torch.randn(3, 4, 2)
    x[1, 2, 0] = float("nan")
    x[2, 0, 1] = float("inf")
    with pytest.raises(
        ValueError,
        match=r"holds 2 NaN or infinite value\(s\); the first is nan at index \(1, 2, 0\)",
    ):
        SequenceDataset(x)
    y = torch.randn(3, 4, 1)
    y[0, 3, 0] = float("-inf")
    with pytest.raises(ValueError, match=r"`y` to hold finite values.*index \(0, 3, 0\)"):
        SequenceDataset(torch.randn(3, 4, 2), y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_on_cuda_match_the_cpu_batches() -> None:
    data = SequenceDataset(
        _pixels(6, 5, 3),
        torch.arange(6) % 2,
        torch.tensor([5, 2, 3, 5, 1, 4]),
        scale=1 / 255,
        std=0.5,
    )
    gpu = data.to("cuda")
    for idx in (torch.tensor([4, 1, 2]), torch.tensor([4, 1, 2], device="cuda")):
        got, want = gpu.batch(idx), data.batch(idx.cpu())
        assert got.x.device.type == "cuda"
        assert got.lengths is not None
        assert got.lengths.device.type == "cpu"
        torch.testing.assert_close(got.x.cpu(), want.x)
        assert got.y is not None
        assert want.y is not None
        assert torch.equal(got.y.cpu(), want.y)


@pytest.mark.parametrize(
    ("y", "hint"),
    [
        (torch.arange(6).reshape(6, 1) % 3, r"Hint: a column of class indices \(N, 1\) becomes"),
        (
            torch.nn.functional.one_hot(torch.arange(6) % 3, 3),
            r"Hint: one-hot rows \(N, C\) become class indices \(N,\) with `y.argmax\(1\)`",
        ),
        (torch.rand(6, 4), r"Hint: add a feature axis to univariate per-step targets \(N, L\)"),
    ],
)
def test_two_dimensional_targets_get_the_likely_fix(y: torch.Tensor, hint: str) -> None:
    with pytest.raises(ShapeError, match=hint):
        SequenceDataset(torch.rand(6, 4, 2), y)


def test_float_class_labels_are_told_to_convert() -> None:
    with pytest.raises(TypeError, match=r"Hint: convert class labels with `y.long\(\)`"):
        SequenceDataset(torch.rand(6, 4, 2), torch.tensor([0.0, 1, 2, 0, 1, 2]))


def test_indices_outside_the_dataset_are_named_before_any_gather() -> None:
    data = SequenceDataset(torch.zeros(4, 3, 1), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(IndexError, match=r"every index in \[0, 4\).*`indices\[1\]` is 5"):
        data.batch([0, 5])
    with pytest.raises(IndexError, match=r"`indices\[0\]` is -1"):
        data.subset(torch.tensor([-1, 2]))
    with pytest.raises(TypeError, match=r"to hold integers, but got dtype torch\.float32"):
        data.batch(torch.tensor([0.5, 1.7]))  # not truncated to samples 0 and 1
    with pytest.raises(ShapeError, match=r"`indices` to have shape \(B,\), but got \(2, 2\)"):
        data.batch(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"`index` to be an int, but got slice\(0, 2, None\)"):
        data[0:2]  # type: ignore[index]
    assert data[-1][1].item() == 1
    assert data.batch(torch.tensor([3, 0])).x.shape == (2, 3, 1)
    with pytest.raises(
        IndexError, match=r"`index` in \[-4, 4\), the dataset's N = 4 samples, but got 9"
    ):
        data[9]


@pytest.mark.parametrize("empty", [[], np.array([]), torch.tensor([], dtype=torch.int64)])
def test_empty_indices_give_an_empty_batch_and_an_empty_subset_is_refused(empty: Any) -> None:
    data = SequenceDataset(torch.zeros(4, 3, 2), torch.tensor([0, 1, 0, 1]))
    assert data.batch(empty).x.shape == (0, 3, 2)
    with pytest.raises(ValueError, match="select at least one sample"):
        data.subset(empty)
