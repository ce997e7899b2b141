"""from_arrays, labels, missing values and Standardizer on datasets, against hand-built data."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

from rnnkit import (
    ModelCheckpoint,
    SequenceClassifier,
    SequenceDataset,
    SequenceTagger,
    ShapeError,
    Trainer,
    load_model,
)
from rnnkit.data import (
    IGNORE_INDEX,
    Standardizer,
    decode_labels,
    encode_labels,
    from_arrays,
    pad,
)


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


# -- layouts --------------------------------------------------------------------------------


def test_nlc_array_is_stored_as_it_is() -> None:
    x = _rng().normal(size=(5, 20, 3))
    data = from_arrays(x)
    assert data.x.shape == (5, 20, 3)
    assert data.x.dtype == torch.float32
    assert torch.equal(data.x, torch.from_numpy(x).float())
    assert data.lengths is None


def test_ncl_array_matches_the_transposed_nlc_array() -> None:
    x = _rng().normal(size=(5, 3, 20))  # aeon's numpy3D
    data = from_arrays(x, layout="NCL")
    assert data.x.shape == (5, 20, 3)
    assert torch.equal(data.x, torch.from_numpy(x.transpose(0, 2, 1).copy()).float())
    assert data.x[2, 7, 1] == torch.tensor(x[2, 1, 7], dtype=torch.float32)


def test_tensor_input_and_dtype() -> None:
    x = torch.randn(4, 10, 2, dtype=torch.float64)
    data = from_arrays(x, dtype=torch.float64)
    assert data.x.dtype == torch.float32  # SequenceDataset keeps float64 as float32
    assert torch.equal(data.x, x.float())
    half = from_arrays(x, dtype=torch.bfloat16)
    assert half.x.dtype == torch.bfloat16


def test_2d_array_is_univariate_in_either_layout() -> None:
    x = _rng().normal(size=(4, 30))
    for layout in ("NLC", "NCL"):
        data = from_arrays(x, layout=layout)
        assert data.x.shape == (4, 30, 1)
        assert torch.equal(data.x[..., 0], torch.from_numpy(x).float())


@pytest.mark.parametrize("layout", ["NLC", "NCL"])
def test_ragged_list_is_padded_like_pad(layout: str) -> None:
    rng = _rng()
    series = [rng.normal(size=(n, 2)) for n in (7, 3, 5)]
    items = series if layout == "NLC" else [s.T for s in series]
    data = from_arrays(items, [0, 1, 0], layout=layout)  # type: ignore[arg-type]
    reference = pad([torch.from_numpy(s).float() for s in series], [0, 1, 0])
    assert data.lengths is not None
    assert reference.lengths is not None
    assert data.lengths.tolist() == [7, 3, 5]
    assert torch.equal(data.x, reference.x)
    assert torch.equal(data.x[1, 3:], torch.zeros(4, 2))


def test_ragged_list_of_1d_series() -> None:
    data = from_arrays([np.arange(4.0), np.arange(2.0)])
    assert data.x.shape == (2, 4, 1)
    assert data.x[1, :, 0].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_ragged_list_with_different_channels_names_the_item() -> None:
    with pytest.raises(ShapeError, match=r"`x\[1\]` to have shape \(C, L_i\) = \(2, \?\)"):
        from_arrays([np.ones((2, 5)), np.ones((3, 5))], layout="NCL")


def test_padding_given_by_lengths_is_zeroed_even_if_nan() -> None:
    x = np.ones((2, 4, 1))
    x[0, 2:] = np.nan  # aeon pads unequal series with NaN
    data = from_arrays(x, lengths=[2, 4])
    assert data.x[0, :, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert data.lengths is not None
    assert data.lengths.tolist() == [2, 4]


def test_per_step_targets_follow_the_layout() -> None:
    x = _rng().normal(size=(3, 2, 6))
    y = _rng().normal(size=(3, 1, 6))
    data = from_arrays(x, y, layout="NCL")
    assert data.y is not None
    assert data.y.shape == (3, 6, 1)
    assert data.classes is None
    assert torch.equal(data.y[..., 0], torch.from_numpy(y[:, 0]).float())


def test_bad_rank_and_options_are_rejected() -> None:
    with pytest.raises(ShapeError, match=r"\(N, C, L\) \(layout='NCL'\)"):
        from_arrays(np.ones((2, 3, 4, 5)), layout="NCL")
    with pytest.raises(ValueError, match="`layout`"):
        from_arrays(np.ones((2, 3, 4)), layout="LNC")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`missing`"):
        from_arrays(np.ones((2, 3, 4)), missing="mean")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating"):
        from_arrays(np.ones((2, 3, 4)), dtype=torch.int64)
    with pytest.raises(ValueError, match="None for a list"):
        from_arrays([np.ones((3, 1))], lengths=[3])


# -- the layout hint ------------------------------------------------------------------------


def test_input_size_mismatch_with_swapped_axes_names_layout() -> None:
    x = np.ones((8, 12, 29))  # (N, C, L) as aeon gives JapaneseVowels, read as NLC by mistake
    with pytest.raises(ShapeError, match=r"= \(\?, \?, 12\).*but got \(8, 12, 29\).*layout='NCL'"):
        from_arrays(x, input_size=12)
    assert from_arrays(x, input_size=12, layout="NCL").input_size == 12


def test_input_size_mismatch_in_ncl_names_nlc() -> None:
    with pytest.raises(ShapeError, match=r"\(N, C, L\) = \(\?, 3, \?\).*layout='NLC'"):
        from_arrays(np.ones((8, 50, 3)), layout="NCL", input_size=3)


def test_input_size_mismatch_without_a_swap_has_no_layout_hint() -> None:
    with pytest.raises(ShapeError, match="which features") as info:
        from_arrays(np.ones((8, 20, 5)), input_size=4)
    assert "layout=" not in str(info.value).split("Hint:")[1]


def test_fewer_steps_than_channels_warns_with_the_layout() -> None:
    with pytest.warns(UserWarning, match=r"L = 1 steps with C = 150 channels.*layout='NCL'"):
        from_arrays(np.ones((4, 1, 150)))  # GunPoint's (N, 1, 150) read as NLC
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_arrays(np.ones((4, 1, 150)), layout="NCL")
        from_arrays(np.ones((4, 28, 28)))  # square: no sign of a mistake
        from_arrays(np.ones((4, 1, 150)), input_size=150)  # the user said so


# -- labels ---------------------------------------------------------------------------------


def test_string_labels_are_encoded_in_sorted_order_and_decoded_back() -> None:
    labels = np.array(["walk", "run", "standing", "walk", "badminton"])
    data = from_arrays(np.ones((5, 4, 1)), labels)
    assert data.classes is not None
    assert data.classes.tolist() == ["badminton", "run", "standing", "walk"]
    assert data.y is not None
    assert data.y.tolist() == [3, 1, 2, 3, 0]
    assert data.num_classes == 4
    assert data.decode(data.y).tolist() == labels.tolist()
    assert data.decode(2) == "standing"


def test_one_based_integer_labels_become_0_based() -> None:
    data = from_arrays(np.ones((3, 4, 1)), [1, 3, 2])
    assert data.y is not None
    assert data.y.tolist() == [0, 2, 1]
    assert data.classes is not None
    assert data.classes.tolist() == [1, 2, 3]


def test_test_set_uses_the_training_classes() -> None:
    train = from_arrays(np.ones((3, 4, 1)), ["a", "b", "c"])
    test = from_arrays(np.ones((2, 4, 1)), ["c", "c"], classes=train.classes)
    assert test.y is not None
    assert test.y.tolist() == [2, 2]
    assert test.num_classes == 3
    with pytest.raises(ValueError, match=r"`y\[1\]` is 'd'"):
        from_arrays(np.ones((2, 4, 1)), ["a", "d"], classes=train.classes)


def test_decode_maps_model_predictions_to_labels() -> None:
    data = from_arrays(_rng().normal(size=(6, 5, 2)), ["x", "y", "z"] * 2)
    assert data.num_classes is not None
    model = SequenceClassifier(2, data.num_classes, 8)
    predicted = model.predict(data.batch(torch.arange(6)).x)
    decoded = data.decode(predicted)
    assert decoded.shape == (6,)
    assert decoded.tolist() == [["x", "y", "z"][int(i)] for i in predicted]


def test_subsets_and_splits_keep_classes() -> None:
    data = from_arrays(np.ones((6, 4, 1)), ["a", "b"] * 3)
    first, _ = data.split(0.5)
    assert first.classes is not None
    assert first.classes.tolist() == ["a", "b"]
    assert data.subset([1]).decode([1]).tolist() == ["b"]


def test_encode_labels_round_trip_against_numpy_unique() -> None:
    labels = _rng().choice(np.array(["q", "p", "r", "s"]), size=50)
    codes, classes = encode_labels(labels)
    known, inverse = np.unique(labels, return_inverse=True)
    assert classes.tolist() == known.tolist()
    assert codes.tolist() == inverse.tolist()
    assert decode_labels(codes, classes).tolist() == labels.tolist()


def test_unsorted_classes_are_respected() -> None:
    codes, classes = encode_labels(["low", "high", "mid"], classes=["low", "mid", "high"])
    assert codes.tolist() == [0, 2, 1]
    assert classes.tolist() == ["low", "mid", "high"]


def test_continuous_labels_and_bad_indices_are_rejected() -> None:
    with pytest.raises(TypeError, match="fractional"):
        from_arrays(np.ones((2, 4, 1)), np.array([0.5, 1.5]))
    data = from_arrays(np.ones((2, 4, 1)), ["a", "b"])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        data.decode([2])
    with pytest.raises(TypeError, match="argmax"):
        data.decode(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="no `classes`"):
        SequenceDataset(torch.ones(2, 4, 1), torch.tensor([0, 1])).decode([0])


def test_sequence_dataset_checks_classes() -> None:
    with pytest.raises(ValueError, match="num_classes = 3"):
        SequenceDataset(torch.ones(2, 4, 1), torch.tensor([0, 2]), num_classes=3, classes=["a"])
    with pytest.raises(ValueError, match="distinct"):
        SequenceDataset(torch.ones(2, 4, 1), torch.tensor([0, 1]), classes=["a", "a"])


# -- a label per step ----------------------------------------------------------------------


def test_step_labels_are_encoded_over_the_valid_steps() -> None:
    tags = np.array([["B", "I", "O", "O"], ["O", "B", "I", "pad"]])
    data = from_arrays(np.ones((2, 4, 3)), tags, lengths=[4, 3])
    assert data.y is not None
    assert data.y.shape == (2, 4)
    assert data.y.dtype == torch.int64
    assert data.classes is not None
    assert data.classes.tolist() == ["B", "I", "O"]
    assert data.y.tolist() == [[0, 1, 2, 2], [2, 0, 1, IGNORE_INDEX]]  # "pad" is padding
    assert data.num_classes == 3
    assert data.decode(data.y[0]).tolist() == ["B", "I", "O", "O"]


def test_step_labels_of_a_ragged_list_follow_its_lengths() -> None:
    x = [np.ones((3, 2)), np.ones((1, 2))]
    data = from_arrays(x, np.array([[5, 7, 5], [7, 0, 0]]))
    assert data.y is not None
    assert data.classes is not None
    assert data.classes.tolist() == [5, 7]  # the padding's 0 is not a class
    assert data.y.tolist() == [[0, 1, 0], [1, IGNORE_INDEX, IGNORE_INDEX]]


def test_ragged_step_labels_as_one_sequence_per_series_match_the_padded_array() -> None:
    x = [np.ones((3, 2)), np.ones((1, 2)), np.ones((2, 2))]
    ragged = from_arrays(x, [["B", "I", "O"], np.array(["O"]), ("B", "I")])
    padded = from_arrays(x, np.array([["B", "I", "O"], ["O", "-", "-"], ["B", "I", "-"]]))
    assert ragged.y is not None
    assert padded.y is not None
    assert ragged.y.shape == (3, 3)
    assert torch.equal(ragged.y, padded.y)
    assert ragged.classes is not None
    assert ragged.classes.tolist() == ["B", "I", "O"]


def test_ragged_step_labels_of_the_wrong_length_name_the_series() -> None:
    x = [np.ones((3, 2)), np.ones((2, 2))]
    with pytest.raises(
        ShapeError,
        match=r"`y\[1\]` to hold a label per step of `x\[1\]`, L_1 = 2 labels, but got 1\.",
    ):
        from_arrays(x, [[0, 1, 0], [1]])
    with pytest.raises(
        ShapeError, match="a label sequence for each of the N = 2 series, but got 3"
    ):
        from_arrays(x, [[0, 1, 0], [1, 0], [1]])


def test_ragged_targets_that_are_not_label_sequences_get_a_hint() -> None:
    x = [np.ones((3, 2)), np.ones((2, 2))]
    pattern = r"unequal shapes\. Hint: per-step labels .* a list of N .* padded to \(N, L, H_y\)"
    with pytest.raises(ShapeError, match=pattern):
        from_arrays(x, [np.ones((3, 1)), np.ones((2, 1))])
    with pytest.raises(ShapeError, match=pattern):  # nested lists of target vectors alike
        from_arrays(x, [[[0.1], [0.2], [0.3]], [[0.5], [0.6]]])


@pytest.mark.parametrize(
    ("y", "where"),
    [(["a", None, "b"], r"y\[1\]"), ([[0, 1], [1, None], [0, 0]], r"y\[1, 1\]")],
)
def test_a_missing_label_is_named(y: Any, where: str) -> None:
    with pytest.raises(ValueError, match=rf"every label in `y` to be set, but `{where}` is None"):
        from_arrays(np.ones((3, 2, 1)), y)


def test_ignore_index_in_an_object_array_is_a_step_to_skip_not_a_class() -> None:
    data = from_arrays(np.ones((2, 3, 1)), [[0, -100, 1], [1, None, None]], lengths=[3, 1])
    assert data.classes is not None
    assert data.classes.tolist() == [0, 1]
    assert data.classes.dtype.kind == "i"  # typed, as if given as integers
    assert data.y is not None
    assert data.y.tolist() == [[0, IGNORE_INDEX, 1], [1, IGNORE_INDEX, IGNORE_INDEX]]


def test_an_unknown_label_in_an_object_array_is_named() -> None:
    with pytest.raises(ValueError, match=r"but `y\[1, 0\]` is 'c'"):
        from_arrays(
            np.ones((2, 2, 1)), [["a", "b"], ["c", None]], lengths=[2, 1], classes=["a", "b"]
        )


def test_fractional_values_in_an_object_array_are_not_labels() -> None:
    with pytest.raises(TypeError, match="fractional part"):
        from_arrays(np.ones((2, 2, 1)), [[0.5, 1.5], [1.5, None]], lengths=[2, 1])


def test_nan_and_pandas_na_are_missing_labels() -> None:
    with pytest.raises(ValueError, match=r"to be set, but `y\[1\]` is nan"):
        from_arrays(np.ones((2, 2, 1)), np.array(["a", np.nan], dtype=object))
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match=r"to be set, but `y\[1\]` is <NA>"):
        from_arrays(np.ones((2, 2, 1)), pd.array(["a", pd.NA], dtype=object))


def test_a_missing_label_at_a_padded_step_is_padding() -> None:
    data = from_arrays(np.ones((2, 2, 1)), [["a", "b"], ["b", None]], lengths=[2, 1])
    assert data.y is not None
    assert data.y.tolist() == [[0, 1], [1, IGNORE_INDEX]]


@pytest.mark.parametrize("y", [["a", 1, "b"], np.array(["a", 1, "b"], dtype=object)])
def test_strings_and_numbers_mixed_are_refused_not_turned_into_strings(y: Any) -> None:
    pattern = r"of one type, but got strings \('a' at `y\[0\]`\) and numbers \(1 at `y\[1\]`\)"
    with pytest.raises(TypeError, match=pattern):
        from_arrays(np.ones((3, 2, 1)), y)
    with pytest.raises(TypeError, match="of one type"):
        encode_labels(y)


def test_an_integer_ignore_index_marks_a_step_to_skip() -> None:
    tags = np.array([[1, 3, IGNORE_INDEX], [3, 3, 1]])
    data = from_arrays(np.ones((2, 3, 1)), tags)
    assert data.classes is not None
    assert data.classes.tolist() == [1, 3]
    assert data.y is not None
    assert data.y.tolist() == [[0, 1, IGNORE_INDEX], [1, 1, 0]]


def test_step_labels_of_another_shape_than_x_name_both() -> None:
    with pytest.raises(ShapeError, match=r"\(N, L\) = \(2, 4\), as `x`, but got \(3, 4\)"):
        from_arrays(np.ones((2, 4, 1)), np.zeros((3, 4), dtype=np.int64))


def test_fractional_lengths_are_refused() -> None:
    with pytest.raises(TypeError, match="`lengths` to hold integers"):
        from_arrays(np.ones((2, 4, 1)), lengths=[4, 2.5])


def test_a_test_set_encodes_step_labels_with_the_training_classes() -> None:
    train = from_arrays(np.ones((1, 3, 1)), np.array([["x", "y", "z"]]))
    test = from_arrays(np.ones((1, 2, 1)), np.array([["z", "x"]]), classes=train.classes)
    assert test.y is not None
    assert test.y.tolist() == [[2, 0]]
    with pytest.raises(ValueError, match=r"3 classes \['x', 'y', 'z'\], but `y\[1, 0\]` is 'w'"):
        from_arrays(np.ones((2, 2, 1)), np.array([["x", "y"], ["w", "x"]]), classes=train.classes)


def test_fractional_step_values_are_not_labels() -> None:
    with pytest.raises(TypeError, match=r"per-step targets \(N, L_y, H_y\)"):
        from_arrays(np.ones((2, 3, 1)), np.full((2, 3), 0.5))


def test_a_tagger_trained_on_step_labels_predicts_them_after_load_model(tmp_path: Any) -> None:
    gen = np.random.default_rng(0)
    x = gen.normal(size=(24, 6, 3)).astype(np.float32)
    tags = np.where(x[..., 0] > 0, "up", "down")  # the label of each step is its sign
    data = from_arrays(x, tags)
    torch.manual_seed(0)
    model = SequenceTagger(3, 2, 8, cell="gru")
    trainer = Trainer(max_epochs=2, batch_size=8, progress=False, seed=0)
    trainer.callbacks.append(ModelCheckpoint(tmp_path))
    trainer.fit(model, data)
    assert model.classes is not None
    assert model.classes.tolist() == ["down", "up"]
    loaded = load_model(tmp_path / "last.ckpt")
    assert isinstance(loaded, SequenceTagger)
    labels = loaded.predict_labels(torch.from_numpy(x))
    assert labels.shape == (24, 6)
    expected = np.array(["down", "up"])[loaded.predict(torch.from_numpy(x)).numpy()]
    np.testing.assert_array_equal(labels, expected)


# -- missing values -------------------------------------------------------------------------


def _with_nan() -> np.ndarray[Any, Any]:
    x = np.arange(2 * 5 * 2, dtype=np.float64).reshape(2, 5, 2)
    x[1, 3, 0] = np.nan
    x[1, 0, 1] = np.nan
    x[1, 1, 1] = np.nan
    return x


def test_nan_is_an_error_naming_sample_and_step() -> None:
    with pytest.raises(ValueError, match=r"sample 1 has NaN at step 0 \(channel 1\); 3 NaN"):
        from_arrays(_with_nan())


def test_nan_error_names_the_aeon_step_in_ncl() -> None:
    x = np.ones((3, 2, 10))
    x[2, 1, 7] = np.nan  # sample 2, channel 1, step 7 in aeon's layout
    with pytest.raises(ValueError, match=r"sample 2 has NaN at step 7 \(channel 1\)"):
        from_arrays(x, layout="NCL")


def test_nan_in_a_ragged_item_names_it() -> None:
    items = [np.ones((1, 4)), np.array([[1.0, 2.0, np.nan]])]
    with pytest.raises(ValueError, match="sample 1 has NaN at step 2"):
        from_arrays(items, layout="NCL")


def test_ffill_carries_the_last_value_and_backfills_leading_nan() -> None:
    data = from_arrays(_with_nan(), missing="ffill")
    x = _with_nan()
    assert data.x[1, :, 0].tolist() == [10.0, 12.0, 14.0, 14.0, 18.0]
    assert data.x[1, :, 1].tolist() == [15.0, 15.0, 15.0, 17.0, 19.0]
    assert torch.equal(data.x[0], torch.from_numpy(x[0]).float())


def test_ffill_matches_pandas() -> None:
    pd = pytest.importorskip("pandas")
    x = _rng().normal(size=(3, 12, 2))
    x[_rng().random(size=x.shape) < 0.3] = np.nan
    x[:, 0] = 1.0  # an observed first step, so pandas' ffill alone is the reference
    data = from_arrays(x, missing="ffill")
    for i in range(3):
        expected = pd.DataFrame(x[i]).ffill().to_numpy()
        assert np.allclose(data.x[i].numpy(), expected)


def test_ffill_stops_at_the_padding() -> None:
    items = [np.array([1.0, np.nan, 3.0, np.nan]), np.array([np.nan, 2.0])]
    data = from_arrays(items, missing="ffill")
    assert data.x[0, :, 0].tolist() == [1.0, 1.0, 3.0, 3.0]
    assert data.x[1, :, 0].tolist() == [2.0, 2.0, 0.0, 0.0]


def test_ffill_of_an_all_nan_channel_is_an_error() -> None:
    x = np.ones((2, 3, 2))
    x[1, :, 1] = np.nan
    with pytest.raises(ValueError, match="sample 1 has only NaN in channel 1"):
        from_arrays(x, missing="ffill")


def test_zero_fills_with_zero() -> None:
    data = from_arrays(_with_nan(), missing="zero")
    assert data.x[1, :, 0].tolist() == [10.0, 12.0, 14.0, 0.0, 18.0]
    assert data.x[1, :2, 1].tolist() == [0.0, 0.0]


def test_infinite_values_are_always_an_error() -> None:
    x = np.ones((2, 3, 1))
    x[0, 2, 0] = np.inf
    with pytest.raises(ValueError, match="sample 0 has inf at step 2"):
        from_arrays(x, missing="zero")


# -- standardisation ------------------------------------------------------------------------


def test_standardizer_fits_valid_steps_only_and_round_trips() -> None:
    rng = _rng()
    series = [rng.normal(5.0, 3.0, size=(n, 2)) for n in (30, 10, 20)]
    data = from_arrays(series)
    scaler = Standardizer().fit(data)
    steps = np.concatenate(series)
    assert np.allclose(scaler.mean.numpy(), steps.mean(0), atol=1e-5)
    assert np.allclose(scaler.std.numpy(), steps.std(0), atol=1e-5)
    standardized = scaler.apply(data)
    batch = standardized.batch(torch.arange(3))
    assert batch.lengths is not None
    valid = torch.cat([batch.x[i, :n] for i, n in enumerate(batch.lengths.tolist())])
    assert torch.allclose(valid.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(valid.std(0, unbiased=False), torch.ones(2), atol=1e-5)
    restored = scaler.inverse_transform(batch.x)
    assert torch.allclose(restored[0, :30], torch.from_numpy(series[0]).float(), atol=1e-4)
    assert standardized.x is data.x  # shared storage, normalised per batch


def test_standardizer_fitted_on_train_is_applied_unchanged_to_test() -> None:
    rng = _rng()
    train = from_arrays(rng.normal(2.0, 1.0, size=(10, 8, 3)))
    test = from_arrays(rng.normal(9.0, 4.0, size=(5, 8, 3)))
    scaler = Standardizer().fit(train)
    scaled = scaler.apply(test).batch(torch.arange(5)).x
    expected = (test.x - scaler.mean) / scaler.std
    assert torch.allclose(scaled, expected)
    with pytest.raises(ValueError, match="already normalised"):
        scaler.apply(scaler.apply(test))


def test_reversed_arrays_are_read_as_their_values() -> None:
    x = _rng().normal(size=(3, 6, 2))
    reversed_x = x[:, ::-1]
    assert torch.equal(from_arrays(reversed_x).x, torch.from_numpy(x[:, ::-1].copy()).float())
    listed = from_arrays([reversed_x[0], reversed_x[1]], layout="NLC")
    assert torch.equal(listed.x[0], torch.from_numpy(x[0, ::-1].copy()).float())


def test_values_that_overflow_the_dtype_are_named_not_called_missing() -> None:
    x = np.ones((2, 5, 1))
    x[1, 3, 0] = 7e4  # finite, but over float16's largest value
    message = (
        r"Expected `x` to fit dtype=torch.float16 \(largest 65504\), but sample 1 holds 70000 "
        r"at step 3 \(channel 0\)\. Hint: standardise"
    )
    with pytest.raises(ValueError, match=message):
        from_arrays(x, dtype=torch.float16)
    assert from_arrays(x, dtype=torch.bfloat16).x.dtype == torch.bfloat16


def test_nan_padding_of_aligned_step_targets_is_padding_as_in_x() -> None:
    x = np.array([[[1.0, 2.0, 3.0]], [[4.0, np.nan, np.nan]]])  # (N, C, L), aeon's NaN padding
    data = from_arrays(x, x * 10, layout="NCL", lengths=[3, 1])
    assert data.y is not None
    assert data.y[:, :, 0].tolist() == [[10.0, 20.0, 30.0], [40.0, 0.0, 0.0]]
    y = x * 10
    y[0, 0, 1] = np.nan  # within its sequence's length: still an error
    with pytest.raises(ValueError, match="finite"):
        from_arrays(x, y, layout="NCL", lengths=[3, 1])


@pytest.mark.parametrize("layout", ["NLC", "NCL"])
def test_a_2d_array_with_several_channels_expected_says_how_to_pass_one_series(
    layout: str,
) -> None:
    message = (
        r"Expected `x` to have shape \(N, L, C\) = \(\?, \?, 12\), but got \(5, 12\), read as "
        r"N = 5 univariate series \(C = 1\) in either layout\. Hint: one series of 12 channels "
        r"is x\[None\]"
    )
    with pytest.raises(ShapeError, match=message):
        from_arrays(np.zeros((5, 12)), layout=layout, input_size=12)  # type: ignore[arg-type]
    assert from_arrays(np.zeros((5, 12)), layout=layout, input_size=1).x.shape == (5, 12, 1)  # type: ignore[arg-type]
