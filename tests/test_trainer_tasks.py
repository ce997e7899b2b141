"""The Trainer trains any module a task describes, as well as rnnkit's own models."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit import SequenceClassifier, Trainer
from rnnkit.errors import ShapeError
from rnnkit.models import Seq2SeqRegressor
from rnnkit.tasks import Chunk, ClassificationTask, RegressionTask, Task, task_for


class GRUClassifier(nn.Module):
    """A user's module: a GRU and a linear layer on the last hidden state."""

    def __init__(self, input_size: int, num_classes: int, hidden_size: int) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        _, h_n = self.gru(x)
        logits: Tensor = self.head(h_n[-1])
        return logits


class PackedGRUClassifier(GRUClassifier):
    """The same, taking the valid lengths of padded sequences."""

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:  # type: ignore[override]
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths, batch_first=True, enforce_sorted=False
        )
        _, h_n = self.gru(packed)
        logits: Tensor = self.head(h_n[-1])
        return logits


def _data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Label = whether the first feature sums to a positive number (learnable, balanced)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, 3, generator=gen)
    return x, (x[:, :, 0].sum(dim=1) > 0).long()


def _trainer(**kwargs: object) -> Trainer:
    return Trainer(max_epochs=8, batch_size=32, lr=1e-2, seed=0, progress=False, **kwargs)  # type: ignore[arg-type]


def test_a_plain_module_trains_as_well_as_the_sequence_classifier() -> None:
    train, test = _data(256, seed=0), _data(256, seed=1)
    torch.manual_seed(3)
    plain = GRUClassifier(3, 2, 16)
    torch.manual_seed(3)
    rnnkit_model = SequenceClassifier(3, 2, 16, cell="gru")

    _trainer(task=ClassificationTask()).fit(plain, train)
    _trainer().fit(rnnkit_model, train)

    plain_scores = _trainer(task=ClassificationTask()).evaluate(plain, test)
    rnnkit_scores = _trainer().evaluate(rnnkit_model, test)
    assert plain_scores["accuracy"] >= 0.9
    assert rnnkit_scores["accuracy"] >= 0.9
    assert abs(plain_scores["accuracy"] - rnnkit_scores["accuracy"]) <= 0.05


def test_evaluate_and_predict_of_a_plain_module_agree_with_calling_it() -> None:
    x, y = _data(40, seed=2)
    torch.manual_seed(0)
    model = GRUClassifier(3, 2, 8)
    trainer = Trainer(batch_size=16, progress=False, task=ClassificationTask(metrics=["accuracy"]))
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(trainer.predict(model, x), logits)
    scores = trainer.evaluate(model, (x, y))
    assert scores["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    expected = float((logits.argmax(-1) == y).float().mean())
    assert scores["accuracy"] == pytest.approx(expected)


def test_a_plain_module_gets_the_lengths_of_padded_sequences() -> None:
    x, y = _data(32, seed=4)
    lengths = torch.randint(2, 9, (32,))
    torch.manual_seed(0)
    model = PackedGRUClassifier(3, 2, 8)
    trainer = Trainer(max_epochs=1, batch_size=8, progress=False, task=ClassificationTask())
    trainer.fit(model, (x, y, lengths))
    with torch.no_grad():
        expected = model(x, lengths)
    torch.testing.assert_close(trainer.predict(model, (x, y, lengths)), expected)


def test_padded_sequences_for_a_module_without_lengths_are_refused_before_training() -> None:
    x, y = _data(16, seed=5)
    trainer = Trainer(max_epochs=1, batch_size=8, progress=False, task=ClassificationTask())
    with pytest.raises(ValueError, match=r"forward takes 1 argument\(s\)"):
        trainer.fit(GRUClassifier(3, 2, 4), (x, y, torch.full((16,), 5)))


def test_a_module_without_a_task_is_refused_with_the_fix() -> None:
    x, y = _data(16, seed=5)
    with pytest.raises(TypeError, match=r"Trainer\(task=rnnkit.tasks.ClassificationTask\(\)\)"):
        Trainer(progress=False).fit(GRUClassifier(3, 2, 4), (x, y))


def test_a_task_takes_the_loss_and_metrics_not_the_trainer() -> None:
    with pytest.raises(ValueError, match=r"ClassificationTask\(metrics=...\)"):
        Trainer(metrics=["accuracy"], task=ClassificationTask())


def test_the_task_checks_the_data_before_training() -> None:
    x, y = _data(16, seed=5)
    task = ClassificationTask(metrics=["mse"])
    with pytest.raises(ValueError, match="metrics for a GRUClassifier"):
        Trainer(progress=False, task=task).fit(GRUClassifier(3, 2, 4), (x, y))
    with pytest.raises(ValueError, match=r"class indices \(N,\) for a GRUClassifier"):
        Trainer(progress=False, task=ClassificationTask()).fit(
            GRUClassifier(3, 2, 4), (x, torch.randn(16, 8, 1))
        )


@pytest.mark.parametrize("name", ["top5_accuracy", "top_k", "top3_accuracy"])
def test_a_top_k_metric_with_fewer_classes_is_refused_before_training(
    name: str, tmp_path: Path
) -> None:
    x, y = _data(16, seed=5)
    model = SequenceClassifier(3, 2, 4)
    before = [p.detach().clone() for p in model.parameters()]
    k = 3 if name == "top3_accuracy" else 5
    message = (
        rf"at least {k} classes for '{name}', but its num_classes = 2\. Hint: .*'top2_accuracy'"
    )
    trainer = Trainer(progress=False, metrics=[name], default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        trainer.fit(model, (x, y))
    with pytest.raises(ValueError, match=message):
        trainer.evaluate(model, (x, y))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not list(tmp_path.iterdir())  # refused before a run folder was made


def test_per_step_class_labels_get_a_hint_about_per_step_labels() -> None:
    x = torch.randn(8, 5, 3)
    loader = [(x, torch.randint(0, 2, (8, 5)))]
    with pytest.raises(ValueError, match=r"per-step class labels \(N, L\).*SequenceTagger"):
        Trainer(progress=False).fit(SequenceClassifier(3, 2, 4), loader)


def test_task_for_picks_the_task_of_rnnkit_models() -> None:
    assert type(task_for(SequenceClassifier(3, 2, 4))) is ClassificationTask
    regression = task_for(Seq2SeqRegressor(1), tbptt_steps=4)
    assert isinstance(regression, RegressionTask)
    assert regression.tbptt_steps == 4
    assert [m.name for m in regression.metrics] == ["mae"]
    with pytest.raises(TypeError):
        task_for(nn.Linear(2, 2))


def test_a_custom_task_defines_the_loss() -> None:
    class SmoothedTask(ClassificationTask):
        def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
            return F.cross_entropy(output, chunk.target, label_smoothing=0.1)

    x, y = _data(32, seed=6)
    torch.manual_seed(0)
    model = GRUClassifier(3, 2, 8)
    trainer = Trainer(batch_size=32, progress=False, task=SmoothedTask())
    with torch.no_grad():
        expected = float(F.cross_entropy(model(x), y, label_smoothing=0.1))
    assert trainer.evaluate(model, (x, y))["loss"] == pytest.approx(expected, rel=1e-5)
    assert isinstance(trainer.task, Task)


def test_a_task_written_from_the_base_class_takes_its_default_metrics() -> None:
    class PlainTask(Task):  # what the Task docstring asks of a subclass, nothing more
        target_kind = "class"
        default_metrics = ("accuracy",)

        def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
            return F.cross_entropy(output, chunk.target)

    x, y = _data(32, seed=6)
    model = GRUClassifier(3, 2, 8)
    result = Trainer(batch_size=32, progress=False, task=PlainTask()).evaluate(model, (x, y))
    with torch.no_grad():
        hits = (model(x).argmax(dim=1) == y).float().mean()
    assert result["accuracy"] == pytest.approx(float(hits))
    with pytest.raises(ValueError, match=r"\(class targets\), but got 'mse'"):
        Trainer(progress=False, task=PlainTask(metrics=["mse"])).evaluate(model, (x, y))

    class Unnamed(Task):
        pass

    with pytest.raises(TypeError, match=r"Expected Unnamed to set `target_kind` to one of"):
        Unnamed()


def test_the_width_of_an_rnnkit_model_is_still_checked_for_predict() -> None:
    with pytest.raises(ShapeError, match="input_size = 3"):
        Trainer(progress=False).predict(SequenceClassifier(3, 2, 4), torch.randn(4, 5, 2))


def test_the_docs_snippet_trains_its_own_module(capsys: pytest.CaptureFixture[str]) -> None:
    snippet = Path(__file__).resolve().parents[1] / "docs" / "_snippets" / "custom_module.py"
    code = snippet.read_text(encoding="utf-8").replace(
        "Trainer(max_epochs", "Trainer(progress=False, max_epochs"
    )
    exec(compile(code, str(snippet), "exec"), {"__name__": "custom_module"})
    out = capsys.readouterr().out
    scores = ast.literal_eval(out.splitlines()[0])
    assert scores["accuracy"] > 0.85
    assert "torch.Size([128, 2])" in out
