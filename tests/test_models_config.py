"""Model configs: JSON round trips, from_config, state_dict round trips, the registry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import rnnkit
from rnnkit.models import MODEL_CLASSES, Seq2SeqRegressor, SequenceClassifier, model_from_config
from rnnkit.models.config import ClassifierConfig, RegressorConfig

CLASSIFIER_OPTIONS: dict[str, Any] = {
    "input_size": 3,
    "num_classes": 4,
    "hidden_size": 6,
    "cell": "lstm",
    "num_layers": 2,
    "bidirectional": True,
    "dropout": 0.25,
    "proj_size": 2,
    "readout": "mean",
    "batch_first": False,
    "init": "orthogonal",
}
REGRESSOR_OPTIONS: dict[str, Any] = {
    "input_size": 2,
    "output_size": 1,
    "hidden_size": 5,
    "cell": "rnn",
    "nonlinearity": "relu",
    "init": "identity",
}


def test_classifier_config_records_every_option_and_survives_json() -> None:
    model = SequenceClassifier(**CLASSIFIER_OPTIONS)
    data = json.loads(json.dumps(model.config.to_dict()))
    assert data["model"] == "SequenceClassifier"
    assert {k: data[k] for k in CLASSIFIER_OPTIONS} == CLASSIFIER_OPTIONS
    assert data["nonlinearity"] == "tanh"
    rebuilt = SequenceClassifier.from_config(data)
    assert rebuilt.config == model.config
    assert SequenceClassifier.from_config(model.config).config == model.config


def test_regressor_config_resolves_output_size() -> None:
    assert Seq2SeqRegressor(3).config.output_size == 3
    model = Seq2SeqRegressor(**REGRESSOR_OPTIONS)
    data = json.loads(json.dumps(model.config.to_dict()))
    assert data == {"model": "Seq2SeqRegressor", **model.config.kwargs()}
    assert Seq2SeqRegressor.from_config(data).config == model.config


def test_configs_are_frozen() -> None:
    config = SequenceClassifier(3, 4).config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_size = 8  # type: ignore[misc]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize(
    ("cls", "options"),
    [(SequenceClassifier, CLASSIFIER_OPTIONS), (Seq2SeqRegressor, REGRESSOR_OPTIONS)],
)
def test_state_dict_round_trip_through_the_registry(cls: Any, options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = cls(**options).eval()
    name = type(model).__name__
    assert MODEL_CLASSES[name] is cls
    rebuilt = model_from_config(json.loads(json.dumps(model.config.to_dict())))
    assert type(rebuilt) is cls
    assert not torch.equal(next(rebuilt.parameters()), next(model.parameters()))
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    x = torch.randn(5, 2, options["input_size"])  # (L, N, H_in) works for both layouts
    first, second = model(x), rebuilt(x)
    if isinstance(first, tuple):
        first, second = first[0], second[0]
    assert torch.equal(first, second)


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda: SequenceClassifier.from_config({"model": "Seq2SeqRegressor"}), ValueError,
         "Seq2SeqRegressor.from_config"),
        (lambda: SequenceClassifier.from_config({"input_size": 3, "num_classes": 2, "depth": 4}),
         ValueError, "depth"),
        (lambda: SequenceClassifier.from_config({"input_size": 3}), ValueError, "num_classes"),
        (lambda: SequenceClassifier.from_config(RegressorConfig(input_size=1, output_size=1)),
         TypeError, "ClassifierConfig"),
        (lambda: model_from_config({"input_size": 3}), ValueError, "'model'"),
        (lambda: model_from_config({"model": "Transformer"}), ValueError, "Transformer"),
    ],
)  # fmt: skip
def test_bad_configs_say_what_is_wrong(call: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        call()


def test_from_config_validates_values_like_the_constructor() -> None:
    config = ClassifierConfig(input_size=3, num_classes=2, cell="gru", nonlinearity="relu")
    with pytest.raises(ValueError, match="`nonlinearity`"):
        SequenceClassifier.from_config(config)


def test_public_names_are_exported() -> None:
    assert rnnkit.SequenceClassifier is SequenceClassifier
    assert rnnkit.Seq2SeqRegressor is Seq2SeqRegressor
    assert {"SequenceClassifier", "Seq2SeqRegressor", "RecurrentEncoder"} <= set(rnnkit.__all__)


@pytest.mark.parametrize("model_class", sorted(set(MODEL_CLASSES.values()), key=str))
def test_every_model_stores_its_encoders_options_in_its_config(model_class: Any) -> None:
    extra = {"output_size": 2} if model_class is Seq2SeqRegressor else {"num_classes": 3}
    model = model_class(4, hidden_size=5, cell="gru", num_layers=2, dropout=0, **extra)
    assert model.config.dropout == 0.0
    assert isinstance(model.config.dropout, float)  # as the encoder checked it, not the int given
    encoder = model.encoder
    assert (encoder.spec.input_size, encoder.spec.hidden_size, encoder.spec.num_layers) == (4, 5, 2)
    assert (model.config.cell, model.config.num_layers) == (encoder.spec.cell, 2)
    assert model_class.from_config(model.config.to_dict()).config == model.config


def test_numpy_integers_are_stored_as_python_ints_and_checkpoint(tmp_path: Path) -> None:
    import numpy as np

    from rnnkit import load_model
    from rnnkit.io.checkpoint import atomic_save, make_checkpoint

    sizes = np.array([3, 4, 8, 2])  # sizes read off an array's shape or a table are NumPy ints
    model = SequenceClassifier(sizes[0], sizes[1], sizes[2], num_layers=sizes[3])
    assert all(type(v) in (int, float, bool, str) for v in model.config.to_dict().values())
    assert json.loads(json.dumps(model.config.to_dict()))["num_layers"] == 2
    atomic_save(make_checkpoint(model, {}, {}), tmp_path / "m.ckpt")
    assert load_model(tmp_path / "m.ckpt").config == model.config
