"""SequenceTagger: shapes, a hand-written reference, configs, its task's masking, and learning."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rnnkit
from rnnkit import SequenceDataset, SequenceTagger, ShapeError, Trainer, load_model
from rnnkit.data import Batch
from rnnkit.io.checkpoint import atomic_save, make_checkpoint
from rnnkit.metrics import get_metric
from rnnkit.models import MODEL_CLASSES, TaggerConfig, model_from_config
from rnnkit.shapes import CellType, validate_tag_targets
from rnnkit.tasks import TaggingTask, Task

H_IN, C = 3, 5


def _tagger(**options: Any) -> SequenceTagger:
    torch.manual_seed(0)
    settings: dict[str, Any] = {"hidden_size": 6, "cell": "gru", **options}
    return SequenceTagger(H_IN, C, **settings)


def _quiet(**kwargs: Any) -> Trainer:
    return Trainer(progress=False, **kwargs)


# -- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "bidirectional", "num_layers"),
    list(itertools.product(["rnn", "lstm", "gru"], [False, True], [1, 2])),
)
def test_logits_have_a_row_per_step_batched_unbatched_and_time_major(
    cell: CellType, bidirectional: bool, num_layers: int
) -> None:
    options = {"cell": cell, "bidirectional": bidirectional, "num_layers": num_layers}
    model = _tagger(**options)
    x = torch.randn(4, 7, H_IN)
    logits = model(x, torch.tensor([7, 3, 5, 1]))
    assert logits.shape == (4, 7, C)
    logits.sum().backward()
    assert model.head.weight.grad is not None
    assert model(x[0]).shape == (7, C)
    time_major = _tagger(batch_first=False, **options)
    assert time_major(x.transpose(0, 1)).shape == (7, 4, C)


def test_time_major_logits_are_the_batch_first_ones_transposed() -> None:
    model, time_major = _tagger(bidirectional=True), _tagger(bidirectional=True, batch_first=False)
    time_major.load_state_dict(model.state_dict())
    x, lengths = torch.randn(3, 6, H_IN), torch.tensor([6, 2, 4])
    expected = model(x, lengths)
    torch.testing.assert_close(time_major(x.transpose(0, 1), lengths), expected.transpose(0, 1))


def test_equals_a_hand_written_gru_and_linear_with_the_same_weights() -> None:
    model = _tagger(num_layers=2)
    gru = nn.GRU(H_IN, 6, num_layers=2, batch_first=True)
    linear = nn.Linear(6, C)
    gru.load_state_dict(model.encoder.rnn.state_dict())
    linear.load_state_dict(model.head.state_dict())
    x = torch.randn(4, 9, H_IN)
    expected = linear(gru(x)[0])
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model(x[2]), expected[2])


def test_padded_steps_are_zero_and_valid_steps_equal_each_sequence_alone() -> None:
    model = _tagger(bidirectional=True)
    x, lengths = torch.randn(3, 8, H_IN), torch.tensor([8, 3, 5])
    logits = model(x, lengths)
    for n, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(logits[n, :length], model(x[n, :length]))
        assert torch.equal(logits[n, length:], torch.zeros(8 - length, C))


def test_predict_and_predict_proba_run_per_step_in_eval_mode_without_graph() -> None:
    model = _tagger(num_layers=2, dropout=0.5)
    model.train()
    x, lengths = torch.randn(2, 5, H_IN), torch.tensor([5, 2])
    proba = model.predict_proba(x, lengths)
    classes = model.predict(x, lengths)
    assert model.training
    assert proba.shape == (2, 5, C)
    assert not proba.requires_grad
    torch.testing.assert_close(proba.sum(-1), torch.ones(2, 5))
    assert classes.shape == (2, 5)
    assert classes.dtype == torch.int64
    model.eval()
    assert torch.equal(classes, model(x, lengths).argmax(-1))
    assert model.predict(x[0]).shape == (5,)


def test_bad_input_raises_shape_error_naming_x() -> None:
    with pytest.raises(ShapeError, match="`x`"):
        _tagger()(torch.randn(4, 7, H_IN + 1))


def test_bad_num_classes_is_refused() -> None:
    with pytest.raises(ValueError, match="`num_classes` >= 1"):
        SequenceTagger(3, 0)
    with pytest.raises(TypeError, match="`num_classes`"):
        SequenceTagger(3, 2.5)  # type: ignore[arg-type]


def test_repr_shows_the_per_step_logits() -> None:
    assert "logits (N, L, C) = (N, L, 5)" in repr(_tagger())


# -- config, registry, checkpoints ----------------------------------------------------------


def test_config_survives_json_and_rebuilds_through_the_registry() -> None:
    options: dict[str, Any] = {
        "hidden_size": 6,
        "cell": "lstm",
        "num_layers": 2,
        "bidirectional": True,
        "dropout": 0.25,
        "proj_size": 2,
        "batch_first": False,
        "init": "orthogonal",
    }
    model = SequenceTagger(H_IN, C, **options)
    data = json.loads(json.dumps(model.config.to_dict()))
    assert data["model"] == "SequenceTagger"
    assert {k: data[k] for k in options} == options
    assert isinstance(model.config, TaggerConfig)
    assert MODEL_CLASSES["SequenceTagger"] is SequenceTagger
    rebuilt = model_from_config(data)
    assert type(rebuilt) is SequenceTagger
    assert rebuilt.config == model.config


def test_load_model_rebuilds_a_tagger_with_equal_outputs(tmp_path: Path) -> None:
    model = _tagger(bidirectional=True, cell="lstm").eval()
    atomic_save(make_checkpoint(model, {}, {}), tmp_path / "tagger.ckpt")
    torch.manual_seed(5)
    rebuilt = load_model(tmp_path / "tagger.ckpt")
    assert isinstance(rebuilt, SequenceTagger)
    x, lengths = torch.randn(3, 6, H_IN), torch.tensor([6, 1, 4])
    assert torch.equal(rebuilt(x, lengths), model(x, lengths))


def test_public_names_are_exported() -> None:
    assert rnnkit.SequenceTagger is SequenceTagger
    assert rnnkit.validate_tag_targets is validate_tag_targets
    assert {"SequenceTagger", "validate_tag_targets"} <= set(rnnkit.__all__)
    assert {"SequenceTagger", "TaggerConfig"} <= set(rnnkit.models.__all__)


# -- target validation ----------------------------------------------------------------------


def test_tag_targets_shape_error_message() -> None:
    with pytest.raises(ShapeError) as info:
        validate_tag_targets(torch.zeros(4, 12, 1, dtype=torch.long), batch_size=4, seq_len=12,
                             num_classes=5)  # fmt: skip
    assert str(info.value) == (
        "Expected `y` to be an int64 tensor of shape (N, L) = (4, 12) with class indices in "
        "0..C-1 = 0..4 (or -100 at steps to skip), but got a tensor of shape (4, 12, 1). "
        "Hint: remove the trailing dimension with y.squeeze(-1)."
    )


@pytest.mark.parametrize(
    ("y", "pattern"),
    [
        (torch.zeros(4, 12), r"convert them with y\.long\(\)"),
        (torch.zeros(4, 12, C), r"y\.argmax\(dim=-1\)"),
        (torch.zeros(12, 4, dtype=torch.long), r"y\.transpose\(0, 1\)"),
        (torch.zeros(4, dtype=torch.long), "one label per sequence"),
        (torch.full((4, 12), 5), r"y\[0, 0\] = 5.*num_classes = 6"),
        (torch.full((4, 12), -1), r"y\[0, 0\] = -1.*mark steps to skip with -100"),
    ],
)
def test_bad_tag_targets_get_a_hint(y: Tensor, pattern: str) -> None:
    with pytest.raises(ShapeError, match=pattern):
        validate_tag_targets(y, batch_size=4, seq_len=12, num_classes=C)


def test_tag_targets_allow_the_ignore_index_and_unbatched_sequences() -> None:
    y = torch.full((4, 12), -100)
    y[1, 3] = C - 1
    validate_tag_targets(y, batch_size=4, seq_len=12, num_classes=C)
    validate_tag_targets(y[1], batch_size=None, seq_len=12, num_classes=C)


def test_dataset_keeps_integer_per_step_labels_as_tags() -> None:
    y = torch.tensor([[0, 2, -100], [1, -100, -100]])
    data = SequenceDataset(torch.randn(2, 3, H_IN), y, torch.tensor([3, 1]))
    assert data.target_kind == "tag"
    assert data.num_classes == 3
    assert data.target_size is None
    batch = data.batch(torch.tensor([1]))
    assert batch.y is not None
    assert torch.equal(batch.y, torch.tensor([[1]]))
    assert "tag (C=3)" in repr(data)
    with pytest.raises(ValueError, match=r"got -3 at index \(0, 1\)"):
        SequenceDataset(torch.randn(2, 3, H_IN), torch.tensor([[0, -3, 1], [1, 1, 1]]))


# -- the task: masking and ignore_index -------------------------------------------------------


def _task(**kwargs: Any) -> Task:
    return TaggingTask(kwargs.get("loss"), [get_metric("accuracy")])


def _loss_and_grads(model: SequenceTagger, batch: Batch) -> tuple[Tensor, list[Tensor]]:
    task = _task()
    model.zero_grad()
    (chunk,) = task.chunks(batch)
    output, _ = task.forward(model, chunk, None)
    loss = task.loss(output, chunk)
    torch.autograd.backward(loss)
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_targets_at_padded_steps_change_neither_loss_nor_gradients() -> None:
    model = _tagger(bidirectional=True)
    x, lengths = torch.randn(3, 6, H_IN), torch.tensor([6, 2, 4])
    y = torch.randint(0, C, (3, 6))
    other = y.clone()
    padded = torch.arange(6) >= lengths.unsqueeze(1)
    other[padded] = (y[padded] + 1) % C
    loss, grads = _loss_and_grads(model, Batch(x, y, lengths))
    loss_other, grads_other = _loss_and_grads(model, Batch(x, other, lengths))
    assert torch.equal(loss, loss_other)
    assert len(grads) == len(list(model.parameters()))
    for g, h in zip(grads, grads_other, strict=True):
        assert torch.equal(g, h)
    valid = ~padded
    expected = F.cross_entropy(model(x, lengths)[valid], y[valid])
    torch.testing.assert_close(loss, expected)


def test_ignore_index_steps_count_in_neither_loss_nor_accuracy() -> None:
    model = _tagger()
    x, lengths = torch.randn(4, 5, H_IN), torch.tensor([5, 5, 3, 2])
    y = torch.randint(0, C, (4, 5))
    y[0, :2] = -100
    y[2, 1] = -100
    task = _task()
    (chunk,) = task.chunks(Batch(x, y, lengths))
    keep = (torch.arange(5) < lengths.unsqueeze(1)) & (y != -100)
    assert chunk.elements == int(keep.sum())
    output, _ = task.forward(model, chunk, None)
    expected = F.cross_entropy(output[keep], y[keep])
    torch.testing.assert_close(task.loss(output, chunk), expected)
    (name, total, count), = task.metric_parts(output, chunk)  # fmt: skip
    hits = (output.argmax(-1) == y)[keep]
    assert name == "accuracy"
    assert float(count) == keep.sum()
    assert float(total) == hits.sum()


def test_a_batch_without_labelled_steps_has_zero_loss() -> None:
    task = _task()
    batch = Batch(torch.randn(2, 3, H_IN), torch.full((2, 3), -100), None)
    (chunk,) = task.chunks(batch)
    output, _ = task.forward(_tagger(), chunk, None)
    loss = task.loss(output, chunk)
    assert float(loss.detach()) == 0.0
    assert loss.requires_grad


def test_a_user_loss_gets_only_the_labelled_valid_steps() -> None:
    seen: list[tuple[int, ...]] = []

    def loss(logits: Tensor, target: Tensor) -> Tensor:
        seen.append((*logits.shape, *target.shape))
        return F.cross_entropy(logits, target)

    task = TaggingTask(loss, [])
    y = torch.zeros(2, 4, dtype=torch.long)
    y[0, 0] = -100
    (chunk,) = task.chunks(Batch(torch.randn(2, 4, H_IN), y, torch.tensor([4, 2])))
    task.loss(task.forward(_tagger(), chunk, None)[0], chunk)
    assert seen == [(5, C, 5)]


def test_a_user_loss_is_not_called_for_a_batch_without_labelled_steps() -> None:
    seen: list[int] = []

    def loss(logits: Tensor, target: Tensor) -> Tensor:
        seen.append(int(target.numel()))
        return F.cross_entropy(logits, target)

    task = TaggingTask(loss, [])
    batch = Batch(torch.randn(2, 3, H_IN), torch.full((2, 3), -100), None)
    (chunk,) = task.chunks(batch)
    value = task.loss(task.forward(_tagger(), chunk, None)[0], chunk)
    assert float(value.detach()) == 0.0
    assert value.requires_grad
    assert not seen


def test_an_epoch_without_labelled_steps_records_nan_as_evaluate_does(tmp_path: Path) -> None:
    x, y = torch.randn(4, 5, H_IN), torch.full((4, 5), -100)
    trainer = _quiet(max_epochs=1, default_root_dir=tmp_path)
    (record,) = trainer.fit(_tagger(), (x, y), val=(x, y)).to_list()
    evaluated = trainer.evaluate(_tagger(), (x, y))
    assert set(evaluated) == {"loss", "accuracy"}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert math.isnan(record[key]), key
    assert all(math.isnan(value) for value in evaluated.values())


def test_labels_in_padding_are_neither_counted_nor_checked(tmp_path: Path) -> None:
    torch.manual_seed(3)
    x, lengths = torch.randn(4, 5, H_IN), torch.tensor([5, 2, 4, 3])
    clean = torch.randint(0, C, (4, 5))
    padded = torch.arange(5) >= lengths.unsqueeze(1)
    trainer = _quiet(batch_size=2, default_root_dir=tmp_path)
    model = _tagger()
    expected = trainer.evaluate(model, (x, clean, lengths))
    for fill in (7, -1):  # beyond num_classes, and negative: only in the padding
        dirty = clean.masked_fill(padded, fill)
        assert trainer.evaluate(model, (x, dirty, lengths)) == expected
        loader = [(x[:2], dirty[:2], lengths[:2]), (x[2:], dirty[2:], lengths[2:])]
        assert trainer.evaluate(model, loader) == pytest.approx(expected)
    stored = SequenceDataset(x, clean.masked_fill(padded, 7), lengths).y
    assert stored is not None
    assert torch.equal(stored, clean.masked_fill(padded, -100))


# -- the Trainer ------------------------------------------------------------------------------


def _memory_task(n: int, generator: torch.Generator, k: int = 2) -> tuple[Tensor, ...]:
    """One-hot classes in; the label at step t is the class seen at step t - k."""
    steps, classes = 12, 4
    lengths = torch.randint(k + 2, steps + 1, (n,), generator=generator)
    seen = torch.randint(0, classes, (n, steps), generator=generator)
    x = F.one_hot(seen, classes).float()
    y = torch.full((n, steps), -100)
    y[:, k:] = seen[:, :-k]
    return x, y, lengths


def test_trainer_learns_a_per_step_task_that_needs_memory() -> None:
    generator = torch.Generator().manual_seed(0)
    train, held_out = _memory_task(320, generator), _memory_task(256, generator)
    torch.manual_seed(0)
    model = SequenceTagger(4, 4, 24, cell="gru")
    trainer = _quiet(max_epochs=5, batch_size=32, lr=0.04, seed=0)
    history = trainer.fit(model, train)
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert trainer.evaluate(model, held_out)["accuracy"] >= 0.99


def test_trainer_predicts_per_step_logits_and_matches_the_model() -> None:
    model = _tagger().eval()
    x = torch.randn(5, 4, H_IN)
    predicted = _quiet(batch_size=2).predict(model, x)
    assert predicted.shape == (5, 4, C)
    torch.testing.assert_close(predicted, model(x))


def test_trainer_evaluates_a_time_major_tagger_like_a_batch_first_one() -> None:
    model, time_major = _tagger(), _tagger(batch_first=False)
    time_major.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(1)
    x, _, lengths = _memory_task(16, generator)
    data = (x[..., :H_IN], torch.randint(0, C, (16, 12), generator=generator), lengths)
    expected = _quiet(batch_size=8).evaluate(model, data)
    got = _quiet(batch_size=8).evaluate(time_major, data)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "y", "pattern"),
    [
        (lambda: rnnkit.SequenceClassifier(H_IN, C, 4), torch.zeros(6, 4, dtype=torch.long),
         "use a SequenceTagger for a class label at every step"),
        (lambda: _tagger(), torch.zeros(6, dtype=torch.long),
         "use a SequenceClassifier for one label per sequence"),
        (lambda: _tagger(), torch.zeros(6, 4, 1), "use a Seq2SeqRegressor for per-step values"),
    ],
)  # fmt: skip
def test_trainer_refuses_the_other_kind_of_target_with_a_pointing_hint(
    model: Any, y: Tensor, pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern):
        _quiet(max_epochs=1).fit(model(), (torch.randn(6, 4, H_IN), y))


def test_trainer_refuses_labels_beyond_num_classes_and_regression_metrics() -> None:
    data = (torch.randn(6, 4, H_IN), torch.full((6, 4), C))
    with pytest.raises(ValueError, match=f"num_classes = {C + 1}"):
        _quiet(max_epochs=1).fit(_tagger(), data)
    with pytest.raises(ValueError, match="'mse'"):
        _quiet(max_epochs=1, metrics=["mse"]).fit(_tagger(), (data[0], data[1] - 1))


def test_trainer_takes_tag_batches_from_an_iterable_like_from_tensors() -> None:
    generator = torch.Generator().manual_seed(2)
    x, y, lengths = _memory_task(16, generator)
    batches = [Batch(x[i : i + 8], y[i : i + 8], lengths[i : i + 8]) for i in (0, 8)]
    model = SequenceTagger(4, 4, 6, cell="gru")
    from_iterable = _quiet(batch_size=8).evaluate(model, batches)
    assert from_iterable == pytest.approx(_quiet(batch_size=8).evaluate(model, (x, y, lengths)))
    with pytest.raises(ShapeError, match=r"per-step class labels must be integers"):
        _quiet(batch_size=8).evaluate(model, [Batch(x, y.float(), lengths)])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_step_by_step_equals_the_whole_sequence(cell: CellType) -> None:
    torch.manual_seed(0)
    model = SequenceTagger(3, 4, hidden_size=6, cell=cell, num_layers=2).eval()
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        whole = model(x)
        state = None
        steps = []
        for t in range(x.shape[1]):
            logits, state = model.step(x[:, t], state)
            steps.append(logits)
    assert torch.stack(steps, dim=1).shape == (2, 5, 4)
    torch.testing.assert_close(torch.stack(steps, dim=1), whole)
