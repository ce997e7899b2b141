"""Class labels and scalers travel with the model: set by the Trainer, saved, loaded, used.

A model trained on string labels and standardised inputs returns, after ``load_model``, the
same original labels from raw inputs as the manual path (standardise, predict, decode with the
training set's mapping); a regressor's ``forecast`` equals standardise, ``generate``, invert.
The checkpoint's section is data: each malformed field is refused with its own message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from rnnkit import (
    ModelCheckpoint,
    Seq2SeqRegressor,
    SequenceClassifier,
    SequenceTagger,
    Trainer,
    load_model,
)
from rnnkit.data import (
    SequenceDataset,
    Standardizer,
    from_arrays,
    next_step,
    statistics_problem,
)
from rnnkit.errors import CorruptCheckpointError, ShapeError
from rnnkit.io._data_card import check_data_section
from rnnkit.io.checkpoint import atomic_save, load_checkpoint, make_checkpoint
from rnnkit.training._data_card import check_data_card, dataset_card

LABELS = np.array(["walk", "run", "sit", "walk", "run", "stand"] * 4)


def _raw(seed: int = 0) -> Tensor:
    """24 raw series (N, L, H_in) = (24, 5, 3), far from standardised."""
    gen = torch.Generator().manual_seed(seed)
    return 10.0 + 3.0 * torch.randn(24, 5, 3, generator=gen)


def _prepared() -> tuple[Tensor, SequenceDataset, Standardizer]:
    raw = _raw()
    train = from_arrays(raw, LABELS)
    scaler = Standardizer().fit(train)
    return raw, scaler.apply(train), scaler


def _labels(classes: np.ndarray[Any, Any] | None) -> list[Any]:
    assert classes is not None
    return list(classes.tolist())


def _fit(model: Any, data: Any, folder: Path, epochs: int = 1, **kwargs: Any) -> Trainer:
    trainer = Trainer(max_epochs=epochs, batch_size=8, seed=0, progress=False)
    trainer.callbacks.append(ModelCheckpoint(folder))
    trainer.fit(model, data, **kwargs)
    return trainer


# -- label encoding and scaler round trips ----------------------------------------------------


def test_predict_labels_after_load_model_returns_the_original_labels(tmp_path: Path) -> None:
    raw, data, _scaler = _prepared()
    torch.manual_seed(0)
    model = SequenceClassifier(3, 4, 8, cell="gru")
    _fit(model, data, tmp_path)
    expected = data.decode(model.predict(data.batch(range(len(data))).x))
    assert _labels(model.classes) == ["run", "sit", "stand", "walk"]

    loaded = load_model(tmp_path / "last.ckpt")
    assert isinstance(loaded, SequenceClassifier)
    assert _labels(loaded.classes) == _labels(data.classes)
    labels = loaded.predict_labels(raw)
    assert isinstance(labels, np.ndarray)
    assert labels.shape == (24,)
    np.testing.assert_array_equal(labels, expected)
    assert set(labels.tolist()) <= set(LABELS.tolist())
    assert loaded.predict_labels(raw[3]) == expected[3]  # unbatched: one label


def test_the_input_scaler_round_trip_equals_the_manual_path(tmp_path: Path) -> None:
    raw, data, scaler = _prepared()
    torch.manual_seed(0)
    model = SequenceClassifier(3, 4, 8, cell="gru")
    _fit(model, data, tmp_path)
    loaded = load_model(tmp_path / "last.ckpt")
    assert isinstance(loaded, SequenceClassifier)
    assert loaded.input_scaler is not None
    torch.testing.assert_close(loaded.input_scaler.mean, scaler.mean, rtol=0, atol=0)
    torch.testing.assert_close(loaded.input_scaler.std, scaler.std, rtol=0, atol=0)
    manual = data.decode(loaded.predict(scaler.transform(raw)))
    np.testing.assert_array_equal(loaded.predict_labels(raw), manual)
    # and the raw inputs alone would give other logits: the scaler is really applied
    assert not torch.allclose(loaded(raw), loaded(scaler.transform(raw)))


def test_forecast_after_load_model_equals_standardise_generate_invert(tmp_path: Path) -> None:
    t = torch.linspace(0, 12, 60)
    series = (50.0 + 8.0 * torch.sin(t)).unsqueeze(-1)  # (T, 1), original units
    scaler = Standardizer().fit(series[:48])
    torch.manual_seed(0)
    model = Seq2SeqRegressor(1, hidden_size=8, cell="gru")
    model.input_scaler = model.target_scaler = scaler
    _fit(model, next_step(scaler.transform(series[:48])), tmp_path)

    loaded = load_model(tmp_path / "last.ckpt")
    assert isinstance(loaded, Seq2SeqRegressor)
    assert loaded.target_scaler is not None
    history = series[:48].unsqueeze(0)
    predicted, _ = loaded.generate(scaler.transform(history), steps=12)
    manual = scaler.inverse_transform(predicted)
    forecast = loaded.forecast(history, steps=12)
    assert forecast.shape == (1, 12, 1)
    torch.testing.assert_close(forecast, manual, rtol=0, atol=0)
    torch.testing.assert_close(forecast, model.forecast(history, steps=12))
    assert float(forecast.mean()) > 30.0  # original units, not standardised ones
    torch.testing.assert_close(loaded.forecast(series[:48], steps=3), forecast[0, :3])


def test_forecast_without_scalers_is_generate(tmp_path: Path) -> None:
    model = Seq2SeqRegressor(2, hidden_size=4)
    prime = torch.randn(3, 6, 2)
    torch.testing.assert_close(model.forecast(prime, 4), model.generate(prime, 4)[0])


def test_a_tagger_returns_its_labels_per_step_after_load_model(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    x, tags = torch.randn(16, 6, 3, generator=gen), torch.randint(0, 3, (16, 6), generator=gen)
    torch.manual_seed(0)
    model = SequenceTagger(3, 3, 8, cell="gru")
    model.classes = np.array(["B", "I", "O"])
    _fit(model, (x, tags), tmp_path)
    loaded = load_model(tmp_path / "last.ckpt")
    assert isinstance(loaded, SequenceTagger)
    expected = np.array(["B", "I", "O"])[loaded.predict(x).numpy()]
    np.testing.assert_array_equal(loaded.predict_labels(x), expected)
    assert loaded.predict_labels(x[0]).shape == (6,)


# -- resume ------------------------------------------------------------------------------------


def test_resume_restores_the_saved_labels_and_scalers(tmp_path: Path) -> None:
    _, data, scaler = _prepared()
    torch.manual_seed(0)
    _fit(SequenceClassifier(3, 4, 8, cell="gru"), data, tmp_path)
    resumed = SequenceClassifier(3, 4, 8, cell="gru")
    # class indices in the model's units: the labels and scaler can only come from the file
    x, y = data.batch(range(len(data)))[:2]
    _fit(resumed, (x, y), tmp_path, epochs=2, resume_from=tmp_path / "last.ckpt")
    assert _labels(resumed.classes) == _labels(data.classes)
    assert resumed.input_scaler is not None
    torch.testing.assert_close(resumed.input_scaler.std, scaler.std, rtol=0, atol=0)


def test_a_regressor_keeps_its_target_scaler_on_resume(tmp_path: Path) -> None:
    scaler = Standardizer().fit(torch.linspace(5, 9, 40).unsqueeze(-1))
    data = next_step(scaler.transform(torch.linspace(5, 9, 40).unsqueeze(-1)))
    model = Seq2SeqRegressor(1, hidden_size=4)
    model.target_scaler = scaler
    _fit(model, data, tmp_path)
    resumed = Seq2SeqRegressor(1, hidden_size=4)
    _fit(resumed, data, tmp_path, epochs=2, resume_from=tmp_path / "last.ckpt")
    assert resumed.target_scaler is not None
    assert resumed.input_scaler is None
    torch.testing.assert_close(resumed.target_scaler.mean, scaler.mean, rtol=0, atol=0)


# -- conflicts are refused before any step -----------------------------------------------------


def test_a_model_with_other_classes_is_refused_before_any_step(tmp_path: Path) -> None:
    _, data, _ = _prepared()
    model = SequenceClassifier(3, 4, 8)
    model.classes = ["a", "b", "c", "d"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(max_epochs=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match=r"training data to have the model's `classes`"):
        trainer.fit(model, data)
    assert trainer.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert _labels(model.classes) == ["a", "b", "c", "d"]


def test_resuming_on_data_with_other_classes_is_refused(tmp_path: Path) -> None:
    raw, data, scaler = _prepared()
    _fit(SequenceClassifier(3, 4, 8), data, tmp_path)
    other = scaler.apply(from_arrays(raw, np.char.upper(LABELS)))
    with pytest.raises(ValueError, match=r"training data to have the model's `classes`"):
        _fit(SequenceClassifier(3, 4, 8), other, tmp_path, 2, resume_from=tmp_path / "last.ckpt")


def test_other_statistics_than_the_models_input_scaler_are_refused() -> None:
    raw, data, _scaler = _prepared()
    model = SequenceClassifier(3, 4, 8)
    model.input_scaler = Standardizer().fit(raw * 2.0)
    with pytest.raises(ValueError, match=r"`input_scaler` \(mean"):
        Trainer(max_epochs=1, progress=False).fit(model, data)


def _two_class_data() -> SequenceDataset:
    gen = torch.Generator().manual_seed(3)
    return from_arrays(torch.randn(16, 5, 3, generator=gen), np.array(["a", "b"] * 8))


def _seeded_classifier(num_classes: int = 2) -> SequenceClassifier:
    torch.manual_seed(1)
    return SequenceClassifier(3, num_classes, 8)


def test_a_refused_resume_leaves_nothing_for_the_next_plain_fit(tmp_path: Path) -> None:
    data = _two_class_data()
    _fit(_seeded_classifier(), data, tmp_path, 2)
    model = _seeded_classifier()
    model.classes = ["x", "y"]  # the checkpoint says ["a", "b"]
    trainer = Trainer(max_epochs=3, batch_size=8, seed=0, progress=False)
    with pytest.raises(ValueError, match=r"checkpoint resumed to have the model's `classes`"):
        trainer.fit(model, data, resume_from=tmp_path / "last.ckpt")
    assert trainer._pending_state is None
    model.classes = None
    history = trainer.fit(model, data)  # a plain fit: from scratch, all 3 epochs
    fresh = Trainer(max_epochs=3, batch_size=8, seed=0, progress=False)
    expected = fresh.fit(_seeded_classifier(), data)
    assert len(history) == len(expected) == 3
    assert trainer.global_step == fresh.global_step == 6
    drop = ("time",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in history] == [
        {k: v for k, v in r.items() if k not in drop} for r in expected
    ]
    assert _labels(model.classes) == ["a", "b"]


def test_a_failed_fit_keeps_state_loaded_by_hand(tmp_path: Path) -> None:
    data = _two_class_data()
    saved = _fit(_seeded_classifier(), data, tmp_path, 2).state_dict()
    trainer = Trainer(max_epochs=3, batch_size=8, seed=0, progress=False)
    trainer.load_state_dict(saved)
    model = _seeded_classifier()
    model.input_scaler = Standardizer().fit(torch.randn(10, 3) + 5.0)
    scaled = Standardizer().fit(torch.randn(10, 3)).apply(data)
    with pytest.raises(ValueError, match=r"`input_scaler` \(mean"):
        trainer.fit(model, scaled)
    assert trainer._pending_state is not None
    assert trainer._pending_state["history"] == saved["history"]


def test_a_model_with_more_classes_than_the_data_trains_without_labels() -> None:
    data = _two_class_data()
    model = _seeded_classifier(4)
    history = Trainer(max_epochs=1, batch_size=8, progress=False).fit(model, data)
    assert len(history) == 1
    assert model.classes is None
    with pytest.raises(ValueError, match=r"`model.classes` is None"):
        model.predict_labels(torch.randn(2, 5, 3))
    assert "classes" not in dataset_card(data, num_classes=4)
    assert _labels(dataset_card(data, num_classes=2)["classes"]) == ["a", "b"]


def test_the_card_is_checked_without_setting_anything() -> None:
    model = _seeded_classifier()
    card = check_data_card(model, _two_class_data(), None)
    assert _labels(card["classes"]) == ["a", "b"]
    assert model.classes is None


# -- the section in the file is checked ---------------------------------------------------------


def _good_checkpoint() -> dict[str, Any]:
    model = SequenceClassifier(3, 2, 4)
    model.classes = ["no", "yes"]
    model.input_scaler = Standardizer().fit(torch.randn(20, 3))
    return make_checkpoint(model, {}, {})


_STATS = {"mean": torch.zeros(3), "std": torch.ones(3)}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("classes", ["no", "yes", "maybe"], r"\['classes'\] holds 3 labels, but num_classes is 2"),
        ("classes", ["no", ("y", 1)], r"\['classes'\]\[1\] is a tuple"),
        ("classes", ["no", "no"], r"\['classes'\] holds a label twice"),
        ("classes", ["no", "no\x00"], r"\['classes'\] holds two labels that are equal once"),
        ("classes", ["no", float("nan")], r"\['classes'\]\[1\] is nan"),
        ("classes", "no,yes", r"\['classes'\] is a str, not a non-empty list"),
        ("classes", [1, "1"], r"\['classes'\]\[1\] is of type str but \[0\] of type int"),
        ("classes", [1, 1.5], r"\['classes'\]\[1\] is of type float but \[0\] of type int"),
        ("classes", [0, True], r"\['classes'\]\[1\] is of type bool but \[0\] of type int"),
        pytest.param(
            "input_scaler",
            {**_STATS, "mean": torch.zeros(3).to_sparse()},
            r"\['input_scaler'\]\['mean'\] is a sparse_coo tensor, not a dense",
            marks=pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants"),
        ),
        ("input_scaler", {**_STATS, "std": torch.zeros(3)}, r"\['std'\] holds a value <= 0"),
        ("input_scaler", {**_STATS, "mean": torch.full((3,), float("nan"))}, r"NaN or infinite"),
        ("input_scaler", {"mean": torch.zeros(4), "std": torch.ones(4)}, r"shape \(4,\), but"),
        ("input_scaler", {"mean": torch.zeros(3)}, r"exactly the keys 'mean' and 'std'"),
        ("input_scaler", {**_STATS, "std": torch.ones(3, dtype=torch.int64)}, r"floating-point"),
        ("target_scaler", _STATS, r"without an int 'output_size'"),
        ("steps", 3, r"checkpoint\['data'\] is a dict with keys \['classes', 'input_scaler'"),
    ],
)
def test_a_malformed_data_section_is_refused(
    tmp_path: Path, key: str, value: Any, message: str
) -> None:
    checkpoint = _good_checkpoint()
    checkpoint["data"][key] = value
    path = tmp_path / "bad.ckpt"
    atomic_save(checkpoint, path)
    with pytest.raises(CorruptCheckpointError, match=message):
        load_checkpoint(path)
    with pytest.raises(CorruptCheckpointError, match=message):
        load_model(path)


def test_a_data_section_that_is_not_a_dict_is_refused(tmp_path: Path) -> None:
    checkpoint = _good_checkpoint()
    checkpoint["data"] = ["no", "yes"]
    atomic_save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint\['data'\] is a list"):
        load_model(tmp_path / "bad.ckpt")


def test_a_checkpoint_without_the_section_loads_as_before(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(SequenceClassifier(3, 2, 4), {}, {})
    assert "data" not in checkpoint
    atomic_save(checkpoint, tmp_path / "old.ckpt")
    model = load_model(tmp_path / "old.ckpt")
    assert isinstance(model, SequenceClassifier)
    assert model.classes is None
    assert model.input_scaler is None
    with pytest.raises(ValueError, match=r"`model.classes` is None. Hint: train it"):
        model.predict_labels(torch.randn(2, 4, 3))


def test_the_saved_section_is_plain_data(tmp_path: Path) -> None:
    model = SequenceClassifier(3, 3, 4)
    model.classes = np.array([1, 5, 7], dtype=np.int32)
    checkpoint = make_checkpoint(model, {}, {})
    assert checkpoint["data"] == {"classes": [1, 5, 7]}
    assert all(type(label) is int for label in checkpoint["data"]["classes"])
    atomic_save(checkpoint, tmp_path / "ints.ckpt")
    loaded = load_model(tmp_path / "ints.ckpt")
    assert isinstance(loaded, SequenceClassifier)
    assert _labels(loaded.classes) == [1, 5, 7]


# -- setting the attributes by hand is checked -------------------------------------------------


def test_setting_the_attributes_checks_them() -> None:
    classifier, regressor = SequenceClassifier(3, 2, 4), Seq2SeqRegressor(2, 1)
    with pytest.raises(ValueError, match=r"shape \(C,\) = \(2,\), one label per class"):
        classifier.classes = ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"distinct"):
        classifier.classes = ["a", "a"]
    with pytest.raises(TypeError, match=r"`classes\[1\]` is a dict"):
        classifier.classes = np.array(["a", {}], dtype=object)
    with pytest.raises(ValueError, match=r"a Seq2SeqRegressor predicts values"):
        regressor.classes = ["a", "b"]
    fitted = Standardizer().fit(torch.randn(10, 3))
    with pytest.raises(ValueError, match=r"a SequenceClassifier predicts classes"):
        classifier.target_scaler = fitted
    with pytest.raises(ValueError, match=r"shape \(F,\) = \(2,\), but got \(3,\)"):
        regressor.input_scaler = fitted
    with pytest.raises(ValueError, match=r"fitted"):
        classifier.input_scaler = Standardizer()
    with pytest.raises(TypeError, match=r"Standardizer or None"):
        classifier.input_scaler = {"mean": 0.0}  # type: ignore[assignment]
    with pytest.raises(
        TypeError,
        match=r"one type, but `classes\[0\]` is of type int and `classes\[1\]` of type str",
    ):
        classifier.classes = np.array([1, "1"], dtype=object)
    with pytest.raises(TypeError, match=r"`classes\[1\]` of type bool"):
        classifier.classes = np.array([0, True], dtype=object)
    classifier.input_scaler = fitted
    fitted.fit(torch.randn(10, 3) + 100.0)  # the model keeps its own copy
    assert classifier.input_scaler is not None
    assert float(classifier.input_scaler.mean.max()) < 50


def _scaler(mean: Tensor, std: Tensor) -> Standardizer:
    """A standardizer holding any statistics, as ``fit`` on data with NaN can leave it.

    ``load_state_dict`` refuses bad statistics, so they are set directly.
    """
    scaler = Standardizer()
    scaler._mean, scaler._std = mean, std
    return scaler


_BAD_STATISTICS = [
    (torch.zeros(3), torch.tensor([1.0, 0.0, -1.0]), r"\['std'\] holds a value <= 0"),
    (torch.tensor([0.0, float("nan"), 0.0]), torch.ones(3), r"\['mean'\] holds NaN or inf"),
    (torch.zeros(3), torch.tensor([1.0, float("inf"), 1.0]), r"\['std'\] holds NaN or inf"),
    (torch.zeros(3, device="meta"), torch.ones(3), r"\['mean'\] is on the meta device"),
    (torch.zeros(3).to_sparse(), torch.ones(3), r"\['mean'\] is a sparse_coo tensor"),
]


@pytest.mark.parametrize(("mean", "std", "message"), _BAD_STATISTICS)
def test_the_setter_refuses_what_a_checkpoint_would(
    tmp_path: Path, mean: Tensor, std: Tensor, message: str
) -> None:
    problem = statistics_problem(mean, std)
    assert problem is not None
    assert re.search(message, problem)
    model = SequenceClassifier(3, 2, 4)
    with pytest.raises(ValueError, match=r"`input_scaler` to hold finite statistics.*" + message):
        model.input_scaler = _scaler(mean, std)
    assert model.input_scaler is None
    checkpoint = _good_checkpoint()
    checkpoint["data"]["input_scaler"] = {"mean": mean, "std": std}
    with pytest.raises(CorruptCheckpointError, match=r"\['input_scaler'\]" + message):
        check_data_section(checkpoint, tmp_path / "x.ckpt")
    fitted = Standardizer().fit(torch.randn(10, 3))
    before = fitted.state_dict()
    with pytest.raises(ValueError, match=r"Expected standardizer statistics, .*" + message):
        fitted.load_state_dict({"mean": mean, "std": std})
    assert all(torch.equal(fitted.state_dict()[k], before[k]) for k in before)


def test_load_state_dict_names_a_missing_entry() -> None:
    with pytest.raises(ValueError, match=r"lacks \['std'\]"):
        Standardizer().load_state_dict({"mean": torch.zeros(3)})


def test_fit_refuses_statistics_beyond_float32() -> None:
    series = torch.tensor([[1e39], [3e39]], dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"fit float32, but the fitted state dict \['mean'\] holds NaN or inf"
    ):
        Standardizer().fit(series)


def test_a_deviation_below_float32_marks_a_constant_feature() -> None:
    series = torch.tensor([[0.0, 1.0], [1e-60, 3.0]], dtype=torch.float64)
    scaler = Standardizer().fit(series)
    assert scaler.std.tolist() == [1.0, 1.0]
    assert scaler.std.dtype == torch.float32


def test_good_statistics_have_no_problem() -> None:
    assert statistics_problem(torch.zeros(3), torch.ones(3)) is None
    assert statistics_problem(torch.tensor(2.0), torch.tensor(0.5)) is None
    assert statistics_problem(torch.zeros(3), torch.ones(4)) == (
        "has 'mean' of shape (3,) but 'std' of (4,)"
    )


def test_a_dataset_with_scale_gives_a_scaler_for_its_raw_storage() -> None:
    pixels = torch.randint(0, 256, (6, 4, 3), dtype=torch.uint8)
    data = SequenceDataset(pixels, torch.arange(6) % 2, scale=1 / 255, mean=0.5, std=0.25)
    scaler = dataset_card(data)["input_scaler"]
    torch.testing.assert_close(scaler.transform(pixels), data.batch(range(6)).x)
    assert dataset_card((pixels, torch.zeros(6))) == {}


@pytest.mark.parametrize(
    ("labels", "kinds"),
    [(["cat", 7], "str.*int"), ([True, 2], "bool.*int"), ([1, "1"], "int.*str")],
)
def test_class_labels_of_two_kinds_are_refused_not_converted(labels: list[Any], kinds: str) -> None:
    model = SequenceClassifier(2, 2, 4)
    with pytest.raises(
        TypeError, match=f"to have one type, but `classes\\[0\\]` is of type {kinds}"
    ):
        model.classes = labels
    model.classes = [0.5, 1]  # numbers are numbers, as numpy reads them
    assert model.classes is not None
    assert model.classes.tolist() == [0.5, 1.0]


def test_the_labels_a_model_holds_cannot_be_edited_past_their_checks(tmp_path: Path) -> None:
    model = SequenceClassifier(2, 3, 4)
    model.classes = np.array([np.int64(v) for v in (3, 1, 2)], dtype=object)
    assert model.classes is not None
    assert model.classes.tolist() == [3, 1, 2]
    assert type(model.classes.tolist()[0]) is int
    with pytest.raises(ValueError, match="read-only"):
        model.classes[2] = 3  # a duplicate label would make the checkpoint unloadable
    atomic_save(make_checkpoint(model, {}, {}), tmp_path / "m.ckpt")
    loaded = load_model(tmp_path / "m.ckpt")
    assert isinstance(loaded, SequenceClassifier)
    assert loaded.classes is not None
    assert loaded.classes.tolist() == [3, 1, 2]


def test_raw_inputs_of_the_wrong_shape_get_the_models_error_before_the_scaler() -> None:
    classifier = SequenceClassifier(28, 10, 8)
    classifier.classes = list(range(10))
    classifier.input_scaler = Standardizer().fit(torch.randn(20, 28))
    swapped = (
        r"^Expected `x` to have shape \(N, L, H_in\) = \(\?, \?, 28\), but got \(128, 28, 1\)\. "
        r"Hint: x looks like \(N, H_in, L\)"
    )
    with pytest.raises(ShapeError, match=swapped):
        classifier.predict_labels(torch.randn(128, 28, 1))
    regressor = Seq2SeqRegressor(2, 2, 4)
    regressor.input_scaler = Standardizer().fit(torch.randn(20, 2))
    wider = r"^Expected `history` to have shape \(N, L, H_in\) = \(\?, \?, 2\), but got \(1, 5, 3\)"
    with pytest.raises(ShapeError, match=wider):
        regressor.forecast(torch.randn(1, 5, 3), 2)
    assert regressor.forecast(torch.randn(1, 5, 2), 2).shape == (1, 2, 2)


@pytest.mark.parametrize("scalers", ["both", "target_only", "input_only"])
def test_forecast_feeds_each_prediction_back_in_the_inputs_units(scalers: str) -> None:
    torch.manual_seed(0)
    model = Seq2SeqRegressor(1, 1, 8).eval()
    inputs = Standardizer().fit(torch.randn(200, 1) * 3 + 10)
    targets = Standardizer().fit(torch.randn(200, 1) * 0.5 - 2)
    model.input_scaler = None if scalers == "target_only" else inputs
    model.target_scaler = None if scalers == "input_only" else targets
    history = torch.randn(2, 6, 1) * 3 + 10
    forecast = model.forecast(history, 4)  # original units
    # reference: teacher-force the forecast's own values, mapped as raw inputs, through forward
    to_input = (lambda v: v) if model.input_scaler is None else model.input_scaler.transform
    to_model = (lambda v: v) if model.target_scaler is None else model.target_scaler.transform
    fed = torch.cat([to_input(history), to_input(forecast[:, :-1])], dim=1)
    with torch.no_grad():
        outputs = model(fed)[0][:, history.shape[1] - 1 :]
    torch.testing.assert_close(outputs, to_model(forecast), rtol=1e-4, atol=1e-5)


def test_forecast_between_scalers_keeps_generates_errors_and_equal_statistics() -> None:
    wide = Seq2SeqRegressor(3, 2, 8)
    wide.input_scaler = Standardizer().fit(torch.randn(50, 3))
    wide.target_scaler = Standardizer().fit(torch.randn(50, 2))
    with pytest.raises(ValueError, match="Expected output_size == input_size to feed predictions"):
        wide.forecast(torch.randn(1, 4, 3), 2)  # generate's own error, not a scaler's
    torch.manual_seed(0)
    model = Seq2SeqRegressor(1, 1, 8).eval()
    series = torch.randn(200) * 3 + 10
    per_feature = Standardizer().fit(series.unsqueeze(-1))  # statistics of shape (1,)
    scalar = Standardizer().fit(series)  # the same values, of shape ()
    model.input_scaler, model.target_scaler = scalar, per_feature
    history = series[:6].reshape(1, 6, 1)
    together = model.forecast(history, 20)
    model.input_scaler = per_feature
    assert torch.equal(together, model.forecast(history, 20))  # no round trip through units
