"""Edge cases of the data adapters: missing labels, tags through collate_padded, masks, ids."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rnnkit import ShapeError
from rnnkit.data import (
    IGNORE_INDEX,
    SequenceDataset,
    collate_padded,
    encode_labels,
    from_arrays,
    from_dataframe,
    pad,
)

_MISSING = r"Expected every label in `y` to be set, but `y\[2\]` is nan\. Hint: drop"
_FLOAT_CLASSES = r"class targets `y` of shape \(N,\) to be integers, but got dtype torch\.float32"


def _tags() -> SequenceDataset:
    return from_arrays([np.ones(3), np.ones(2)], [["a", "b", "a"], ["b", "a"]])


# -- missing labels in numeric arrays ------------------------------------------------------


def test_nan_in_a_float_label_array_is_a_missing_label_not_a_fraction() -> None:
    with pytest.raises(ValueError, match=_MISSING):
        from_arrays(np.zeros((3, 4, 1)), np.array([0.0, 1.0, np.nan]))
    with pytest.raises(ValueError, match=r"but `labels\[1\]` is nan"):
        encode_labels(torch.tensor([0.0, float("nan")]))


def test_pandas_nullable_integer_na_is_a_missing_label() -> None:
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match=r"Expected every label in `y` to be set, but `y\[2\]`"):
        from_arrays(np.zeros((3, 4, 1)), pd.array([0, 1, None], dtype="Int64"))


def test_nan_step_labels_are_named_at_valid_steps_and_ignored_in_padding() -> None:
    y = np.array([[0.0, 1.0, np.nan], [1.0, np.nan, 1.0]])
    with pytest.raises(ValueError, match=r"but `y\[0, 2\]` is nan"):
        from_arrays(np.zeros((2, 3, 1)), y)
    data = from_arrays(np.zeros((2, 3, 1)), y, lengths=[2, 1])
    assert data.y is not None
    assert data.y.tolist() == [[0, 1, IGNORE_INDEX], [1, IGNORE_INDEX, IGNORE_INDEX]]


def test_fractional_float_labels_are_still_not_classes() -> None:
    with pytest.raises(TypeError, match="fractional part"):
        from_arrays(np.zeros((2, 4, 1)), np.array([0.5, np.inf]))


# -- collate_padded and pad -----------------------------------------------------------------


def test_collate_padded_gives_a_tag_dataset_the_batch_its_batch_method_gives() -> None:
    tags = _tags()
    expected = tags.batch([0, 1])
    got = collate_padded([tags[0], tags[1]])
    assert got.y is not None
    assert expected.y is not None
    assert got.y.dtype == torch.int64
    assert torch.equal(got.y, expected.y)
    assert torch.equal(got.x, expected.x)
    loaded = next(iter(DataLoader(tags, batch_size=2, collate_fn=collate_padded)))
    assert torch.equal(loaded.y, expected.y)


def test_collate_padded_pads_integer_step_labels_with_the_ignore_index() -> None:
    samples = [
        (torch.ones(3, 1), torch.tensor([1, 0, 1])),
        (torch.ones(1, 1), np.array([2], dtype=np.int32)),
    ]
    batch = collate_padded(samples, padding_value=7.0)
    assert batch.y is not None
    assert batch.y.tolist() == [[1, 0, 1], [2, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch.x[1, 1:, 0].tolist() == [7.0, 7.0]


def test_collate_padded_keeps_floating_step_values_as_per_step_targets() -> None:
    batch = collate_padded([(torch.ones(2, 1), torch.tensor([0.5, 1.5])), (torch.ones(1, 1),) * 2])
    assert batch.y is not None
    assert batch.y.dtype == torch.float32
    assert batch.y.shape == (2, 2, 1)


def test_collate_padded_names_a_step_label_sequence_of_the_wrong_length() -> None:
    samples = [(torch.ones(3, 1), torch.tensor([1, 0])), (torch.ones(2, 1), torch.tensor([0, 1]))]
    with pytest.raises(ShapeError, match=r"`samples\[\]\.y\[0\]` to have 3 steps"):
        collate_padded(samples)


@pytest.mark.parametrize(
    "targets",
    [torch.tensor([0.7, 1.9]), np.array([0.7, 1.9]), [torch.tensor(0.7), 1], [0.7, 1.9]],
)
def test_pad_refuses_floating_class_targets_instead_of_truncating(targets: Any) -> None:
    dtype = "torch.float64" if isinstance(targets, np.ndarray) else "torch.float32"
    with pytest.raises(TypeError, match=_FLOAT_CLASSES.replace(r"torch\.float32", dtype)):
        pad([torch.ones(2, 1), torch.ones(3, 1)], targets)


def test_collate_padded_refuses_floating_class_indices() -> None:
    samples = [(torch.ones(2, 1), torch.tensor(0.7)), (torch.ones(3, 1), torch.tensor(1.0))]
    with pytest.raises(TypeError, match=_FLOAT_CLASSES):
        collate_padded(samples)


def test_pad_still_takes_integer_class_targets() -> None:
    data = pad([torch.ones(2, 1), torch.ones(3, 1)], np.array([1, 0], dtype=np.int32))
    assert data.y is not None
    assert data.y.dtype == torch.int64
    assert data.y.tolist() == [1, 0]


# -- boolean masks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mask",
    [torch.tensor([False, True, True]), np.array([False, True, True]), [False, True, True]],
)
def test_a_boolean_mask_selects_like_numpy(mask: Any) -> None:
    data = SequenceDataset(torch.arange(3.0).reshape(3, 1, 1), torch.tensor([0, 1, 2]))
    part = data.subset(mask)
    assert part.y is not None
    assert part.y.tolist() == [1, 2]
    batch = data.batch(mask)
    assert batch.y is not None
    assert batch.y.tolist() == [1, 2]
    assert batch.x.flatten().tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("mask", "shape"),
    [(torch.tensor([False, True]), r"\(2,\)"), (torch.ones(3, 1, dtype=torch.bool), r"\(3, 1\)")],
)
def test_a_boolean_mask_of_another_shape_is_refused(mask: torch.Tensor, shape: str) -> None:
    data = SequenceDataset(torch.zeros(3, 1, 1))
    pattern = rf"boolean mask `indices` to have shape \(N,\) = \(3,\), .* but got {shape}"
    with pytest.raises(IndexError, match=pattern):
        data.subset(mask)
    with pytest.raises(IndexError, match=pattern):
        data.batch(mask)


def test_an_all_false_mask_selects_no_sample() -> None:
    data = SequenceDataset(torch.zeros(2, 1, 1))
    with pytest.raises(ValueError, match="to select at least one sample"):
        data.subset(torch.zeros(2, dtype=torch.bool))


# -- from_arrays: dtype and label columns ---------------------------------------------------


def test_float64_is_stored_as_float32_with_the_same_batches_and_float16_is_kept() -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, 2))
    wide = from_arrays(x, dtype=torch.float64)
    assert wide.x.dtype == torch.float32
    assert torch.equal(wide.batch([0, 1]).x, torch.from_numpy(x).float())
    assert from_arrays(x, dtype=torch.float16).x.dtype == torch.float16


def test_a_label_column_gets_the_squeeze_hint_sequence_dataset_gives() -> None:
    column = np.array([[0], [1], [0]])
    with pytest.raises(ShapeError) as ours:
        from_arrays(np.zeros((3, 4, 1)), column)
    with pytest.raises(ShapeError) as theirs:
        SequenceDataset(torch.zeros(3, 4, 1), torch.from_numpy(column))
    hint = "Hint: a column of class indices (N, 1) becomes (N,) with `y.squeeze(1)`."
    assert str(ours.value).endswith(hint)
    assert str(theirs.value).endswith(hint)
    assert "(N, L) = (3, 4) for a label per step, but got (3, 1)" in str(ours.value)


def test_a_label_column_is_a_label_per_step_when_sequences_have_one_step() -> None:
    data = from_arrays(np.zeros((3, 1, 1)), np.array([[0], [1], [0]]))
    assert data.target_kind == "tag"
    assert data.y is not None
    assert data.y.tolist() == [[0], [1], [0]]


# -- from_dataframe: ids --------------------------------------------------------------------


def test_a_categorical_id_with_an_unused_category_gives_only_the_used_series() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "id": pd.Categorical(["b", "a", "b", "c"], categories=["a", "b", "c"]),
            "v": [1.0, 2.0, 3.0, 4.0],
            "label": ["x", "y", "x", "z"],
        }
    )
    kept = df[df["id"] != "c"]  # filtering leaves category "c" unused
    data = from_dataframe(kept, id="id", features=["v"], target="label")
    assert data.lengths is not None
    assert data.lengths.tolist() == [1, 2]
    assert data.x[:, :, 0].tolist() == [[2.0, 0.0], [1.0, 3.0]]
    assert data.y is not None
    assert data.decode(data.y).tolist() == ["y", "x"]
    timed = from_dataframe(kept.assign(t=[1, 0, 0]), id="id", features=["v"], time="t")
    assert timed.x[:, :, 0].tolist() == [[2.0, 0.0], [3.0, 1.0]]


@pytest.mark.parametrize("missing", [np.nan, None])
def test_rows_without_an_id_are_refused_naming_the_first(missing: Any) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {"id": ["s", missing, "s", missing], "v": [1.0, 2.0, 3.0, 4.0]}, index=[10, 11, 12, 13]
    )
    pattern = (
        r"Expected every row to have an id in column `id`, but row 11 has (nan|None)\. "
        r"Hint: drop those rows with `df\.dropna\(subset=\['id'\]\)`"
    )
    with pytest.raises(ValueError, match=pattern):
        from_dataframe(df, id="id", features=["v"])


@pytest.mark.parametrize(
    ("shape", "hint"),
    [
        ((8, 1, 28, 28), r"Hint: images \(N, 1, H, W\) read by rows become \(N, H, W\) with "),
        ((8, 28), r"Hint: add a feature axis to univariate sequences with `x.unsqueeze\(-1\)`"),
        ((8, 3, 28, 28), r"Hint: images \(N, C, H, W\) go through rnnkit.data.image_sequences"),
    ],
)
def test_inputs_of_the_wrong_rank_get_the_hint_for_their_rank(
    shape: tuple[int, ...], hint: str
) -> None:
    with pytest.raises(ShapeError, match=r"^Expected `x` to have shape \(N, L, H_in\), .*" + hint):
        SequenceDataset(torch.randn(shape), torch.zeros(8, dtype=torch.long))
