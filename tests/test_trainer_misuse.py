"""Trainer misuses that fail with a clear error before work is lost, or just work."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.callbacks import (
    Callback,
    EarlyStopping,
    GradientFlow,
    LearningRateMonitor,
    ModelCheckpoint,
)
from rnnkit.errors import ShapeError
from rnnkit.models import SequenceClassifier, SequenceTagger
from rnnkit.tasks import ClassificationTask
from rnnkit.training.trainer import Trainer


def _data(n: int = 16) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, 3, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def _model(classes: int = 4) -> SequenceClassifier:
    torch.manual_seed(1)
    return SequenceClassifier(3, classes, hidden_size=8)


def _trainer(**options: Any) -> Trainer:
    options = {"max_epochs": 1, "batch_size": 8, "progress": False, "shuffle": False, **options}
    return Trainer(**options)


# -- batches of a DataLoader or list, checked as they are drawn ------------------------------


def test_numpy_targets_in_a_list_of_batches_train_like_tensors() -> None:
    x, y = _data()
    as_numpy, as_tensors = _model(), _model()
    _trainer().fit(as_numpy, [(x[:8], y[:8].numpy()), (x[8:].numpy(), y[8:].numpy())])
    _trainer().fit(as_tensors, [(x[:8], y[:8]), (x[8:], y[8:])])
    for p, q in zip(as_numpy.parameters(), as_tensors.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_label_beyond_num_classes_in_a_later_batch_names_the_batch() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match=r"Batch 1 \(0-based\) of `train`.*up to 13"):
        _trainer().fit(_model(), [(x[:8], y[:8]), (x[8:], y[8:] + 10)])


def test_a_bad_validation_batch_is_named_before_the_first_epoch_ends() -> None:
    x, y = _data()
    model = _model()
    with pytest.raises(ValueError, match=r"Batch 0 \(0-based\) of `val`.*integer class labels"):
        _trainer().fit(model, (x, y), [(x[:8], y[:8].float())])


def test_float_class_labels_in_a_batch_are_refused_with_a_hint() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match=r"Batch 0 .*integer class labels.*y\.long\(\)"):
        _trainer().fit(_model(), [(x[:8], y[:8].float())])


def test_negative_labels_are_refused_but_minus_100_skips_a_tagger_step() -> None:
    x, _ = _data()
    tags = torch.zeros(8, 5, dtype=torch.long)
    tags[0, 0] = -100
    torch.manual_seed(0)
    tagger = SequenceTagger(3, 2, hidden_size=8)
    _trainer().fit(tagger, [(x[:8], tags)])
    tags[1, 1] = -3
    with pytest.raises(ValueError, match=r"Batch 0 .*class labels in 0\.\.C-1, or -100.*-3"):
        _trainer().fit(tagger, [(x[:8], tags)])


def test_a_mapping_batch_without_x_names_its_keys() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match=r"batch 0 of `train` \(a mapping\).*\['inputs', 'y'\]"):
        _trainer().fit(_model(), [{"inputs": x[:8], "y": y[:8]}])


def test_a_batch_of_the_wrong_width_is_a_shape_error() -> None:
    x, y = _data()
    wide = torch.randn(8, 5, 4)
    with pytest.raises(ShapeError, match=r"Batch 1 .*H_in\) = \(\?, \?, 3\)"):
        _trainer().fit(_model(), [(x[:8], y[:8]), (wide, y[8:])])


def test_evaluate_checks_each_batch_too() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match=r"Batch 1 \(0-based\) of `data`"):
        _trainer().evaluate(_model(), [(x[:8], y[:8]), (x[8:], y[8:] - 5)])


def test_indexed_data_are_not_checked_batch_by_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(
        ClassificationTask, "check_batch", lambda self, m, b, name, i: calls.append(i)
    )
    x, y = _data()
    _trainer().fit(_model(), (x, y))
    assert calls == []
    _trainer().fit(_model(), [(x[:8], y[:8]), (x[8:], y[8:])])
    assert calls == [0, 1]


# -- data that require grad -------------------------------------------------------------------


@pytest.mark.parametrize("form", ["tuple", "list"])
def test_inputs_that_require_grad_are_detached(form: str) -> None:
    x, y = _data()
    plain, grad = _model(), _model()
    leaf = x.clone().requires_grad_()
    data: Any = (leaf, y) if form == "tuple" else [(leaf[:8], y[:8]), (leaf[8:], y[8:])]
    clean: Any = (x, y) if form == "tuple" else [(x[:8], y[:8]), (x[8:], y[8:])]
    _trainer(max_epochs=2).fit(grad, data)
    _trainer(max_epochs=2).fit(plain, clean)
    for p, q in zip(grad.parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q)
    assert leaf.grad is None


# -- user losses --------------------------------------------------------------------------------


def test_a_loss_without_reduction_is_a_value_error_naming_the_shape() -> None:
    x, y = _data()
    trainer = _trainer(loss=lambda o, t: F.cross_entropy(o, t, reduction="none"))
    with pytest.raises(ValueError, match=r"`loss`.*shape \(8,\).*reduction='mean'"):
        trainer.fit(_model(), (x, y))


def test_a_loss_returning_a_float_is_a_type_error() -> None:
    x, y = _data()
    with pytest.raises(TypeError, match=r"`loss` to return a 0-dim torch\.Tensor.*float 1\.0"):
        _trainer(loss=lambda o, t: 1.0).fit(_model(), (x, y))


def test_a_one_element_loss_is_accepted_as_a_scalar() -> None:
    x, y = _data()
    model, reference = _model(), _model()
    _trainer(loss=lambda o, t: F.cross_entropy(o, t).reshape(1)).fit(model, (x, y))
    _trainer().fit(reference, (x, y))
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


# -- a float64 model ----------------------------------------------------------------------------


def test_a_float64_model_trains_like_a_float64_hand_loop() -> None:
    x, y = _data()
    model = _model().double()
    reference = copy.deepcopy(model)
    sgd = lambda params: torch.optim.SGD(params, lr=0.5)  # noqa: E731
    _trainer(batch_size=16, optimizer=sgd).fit(model, (x, y))
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
    F.cross_entropy(reference(x.double()), y).backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert p.dtype == torch.float64
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
    logits = _trainer().predict(model, x)
    torch.testing.assert_close(logits, reference(x.double()).float())


# -- num_classes -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SequenceClassifier, SequenceTagger])
def test_one_class_is_refused_with_the_binary_hint(cls: type) -> None:
    with pytest.raises(ValueError, match=r"`num_classes` >= 2.*num_classes=2"):
        cls(3, 1, hidden_size=8)


# -- the keys of the epoch logs, known at fit start -------------------------------------------


def test_expected_log_keys_are_the_keys_an_epoch_logs(tmp_path: Path) -> None:
    x, y = _data()
    trainer = _trainer(
        metrics=["accuracy", "top5_accuracy"],
        on_nan="skip",
        callbacks=[LearningRateMonitor(key="rate"), ModelCheckpoint(tmp_path)],
    )
    history = trainer.fit(_model(classes=6), (x, y), (x, y))
    expected = trainer.expected_log_keys
    assert expected is not None
    assert expected.complete
    assert expected.has_val
    assert expected.keys == set(history[-1])


def _refused(tmp_path: Path, **options: Any) -> ValueError:
    x, y = _data()
    trainer = _trainer(callbacks=[ModelCheckpoint(tmp_path / "ck", **options)])
    with pytest.raises(ValueError, match=r"ModelCheckpoint.*will not hold") as info:
        trainer.fit(_model(), (x, y))
    assert trainer.global_step == 0
    assert len(trainer.history) == 0
    assert not (tmp_path / "ck").exists()
    return info.value


def test_monitoring_val_loss_without_validation_data_fails_at_fit_start(tmp_path: Path) -> None:
    error = _refused(tmp_path, monitor="val_loss")
    assert "`monitor` key 'val_loss'" in str(error)
    assert "`val=`" in str(error)


def test_a_filename_field_no_epoch_logs_fails_at_fit_start(tmp_path: Path) -> None:
    error = _refused(tmp_path, filename="{epoch}-{f1:.2f}")
    assert "`filename` key 'f1'" in str(error)
    assert "metrics=" in str(error)


def test_early_stopping_on_val_loss_without_validation_data_fails_at_fit_start() -> None:
    x, y = _data()
    trainer = _trainer(max_epochs=3, callbacks=[EarlyStopping(monitor="val_loss")])
    with pytest.raises(ValueError, match=r"EarlyStopping.*`monitor` key 'val_loss'"):
        trainer.fit(_model(), (x, y))
    assert trainer.global_step == 0


def test_gradient_flow_declares_its_key_so_a_checkpoint_may_monitor_it(tmp_path: Path) -> None:
    x, y = _data()
    flow = GradientFlow(x[:4], y[:4], warn=False)
    checkpoint = ModelCheckpoint(tmp_path / "ck", monitor="grad_flow_ratio", mode="max")
    trainer = _trainer(callbacks=[flow, checkpoint])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither refused nor warned about
        trainer.fit(_model(), (x, y))
    assert "grad_flow_ratio" in trainer.history[0]


class _Adds(Callback):
    """Adds ``score`` to the logs; declares it when ``declare``."""

    def __init__(self, declare: bool) -> None:
        self.declare = declare

    def log_keys(self, trainer: Any) -> Sequence[str] | None:
        return ["score"] if self.declare else super().log_keys(trainer)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        logs["score"] = float(epoch)


def test_a_key_a_callback_declares_is_accepted(tmp_path: Path) -> None:
    x, y = _data()
    checkpoint = ModelCheckpoint(tmp_path, monitor="score", filename="{score:.1f}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _trainer(callbacks=[_Adds(declare=True), checkpoint]).fit(_model(), (x, y))
    assert checkpoint.best_path == tmp_path / "0.0.ckpt"


def test_an_undeclaring_callback_turns_the_refusal_into_a_warning(tmp_path: Path) -> None:
    x, y = _data()
    checkpoint = ModelCheckpoint(tmp_path, monitor="score")
    with pytest.warns(UserWarning, match=r"may not hold"):
        _trainer(callbacks=[_Adds(declare=False), checkpoint]).fit(_model(), (x, y))
    assert checkpoint.best_path is not None


def test_a_subclass_step_may_log_keys_of_its_own(tmp_path: Path) -> None:
    class Recording(Trainer):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            outputs = super().training_step(batch, batch_idx)
            outputs.record("extra", torch.tensor(1.0), 1.0)
            return outputs

    x, y = _data()
    checkpoint = ModelCheckpoint(tmp_path, monitor="extra")
    trainer = Recording(max_epochs=1, batch_size=8, progress=False, callbacks=[checkpoint])
    with pytest.warns(UserWarning, match=r"'extra'"):
        history = trainer.fit(_model(), (x, y))
    assert history[-1]["extra"] == 1.0


def test_numpy_labels_of_another_integer_dtype_become_int64() -> None:
    x, y = _data()
    model = _model()
    _trainer().fit(model, [(x[:8], y[:8].numpy().astype(np.int32))])
    assert len(_trainer().predict(model, [x[:8]])) == 8
