"""The Trainer is one object: its run state is data with a state_dict, its steps return data."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from rnnkit import SequenceClassifier, Trainer
from rnnkit.data import Batch
from rnnkit.errors import CheckpointError
from rnnkit.training import RunState, StepOutput


def _data(n: int = 32) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, 3, generator=gen)
    return x, (x[:, :, 0].sum(dim=1) > 0).long()


def _model() -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(3, 2, 6, cell="gru")


def test_the_trainer_has_no_trainer_only_base_class() -> None:
    assert Trainer.__mro__ == (Trainer, object)


def test_the_run_state_round_trips_through_its_state_dict() -> None:
    order = torch.randperm(10)
    run = RunState(epoch=2, global_step=7, position=3, order=order)
    run.seed(5)
    run.totals.add("loss", torch.tensor(1.5), 3)
    state = run.state_dict(torch.device("cpu"))
    other = RunState()
    other.load_state_dict(state)
    assert (other.epoch, other.global_step, other.position) == (2, 7, 0)  # not started yet
    assert other.resume_epoch(2, torch.device("cpu"), keep_totals=True)
    assert other.position == 3
    assert other.order is not None
    assert torch.equal(other.order, order)
    assert other.totals.sums() == {"loss": (1.5, 3.0)}
    assert torch.equal(other.shuffle_gen.get_state(), run.shuffle_gen.get_state())


def test_a_finished_epoch_is_saved_as_the_start_of_the_next() -> None:
    run = RunState(epoch=1, position=4, order=torch.arange(8))
    run.epoch_finished = True
    state = run.state_dict(torch.device("cpu"))
    assert (state["epoch"], state["position"], state["permutation"], state["totals"]) == (
        2,
        0,
        None,
        None,
    )


def test_a_step_snapshot_rolls_the_saved_step_back() -> None:
    run = RunState(global_step=4)
    run.begin_step(torch.device("cpu"))
    run.global_step += 1
    torch.rand(3)  # the step draws from the global generator
    assert run.state_dict(torch.device("cpu"))["global_step"] == 4
    run.end_step(1)
    assert run.state_dict(torch.device("cpu"))["global_step"] == 5


def test_each_rank_resumes_its_own_saved_generators_and_damage_is_refused() -> None:
    cpu = torch.device("cpu")

    def first_draw(state: dict[str, Any], rank: int) -> Tensor:
        RunState().load_state_dict(state, rank)
        return torch.rand(3)

    saved, expected = [], []
    for seed in (10, 11):  # what two processes hold at an epoch's end
        torch.manual_seed(seed)
        saved.append(RunState().rng_state(cpu))
        expected.append(torch.rand(3))
    run = RunState(rank_rng=saved)
    run.epoch_finished = True
    state = run.state_dict(cpu)
    assert torch.equal(first_draw(state, 0), expected[0])
    assert torch.equal(first_draw(state, 1), expected[1])
    rank_zero = first_draw({**state, "rank_rng": None}, 2)  # "rng": the saving process's
    assert torch.equal(first_draw(state, 2), rank_zero)  # a rank beyond the saved ones
    run.begin_step(cpu)  # the step draws: the gathered states are stale
    assert run.rank_rng is None
    with pytest.raises(CheckpointError, match="'rank_rng' to be a list of generator states"):
        RunState().load_state_dict({**state, "rank_rng": [{"torch": 1}, {}]}, 1)


class ExtraMetric(Trainer):
    """Adds the mean first input value as an epoch average of its own."""

    def training_step(self, batch: Batch, batch_idx: int) -> StepOutput:
        outputs = super().training_step(batch, batch_idx)
        outputs.record("first", batch.x[:, 0, 0].sum(), batch.x.shape[0])
        return outputs


def test_an_overridden_step_keeps_the_metrics_and_adds_its_own() -> None:
    x, y = _data()
    history = ExtraMetric(max_epochs=1, batch_size=8, progress=False, seed=0).fit(_model(), (x, y))
    plain = Trainer(max_epochs=1, batch_size=8, progress=False, seed=0).fit(_model(), (x, y))
    assert history[0]["first"] == pytest.approx(float(x[:, 0, 0].mean()), rel=1e-5)
    assert history[0]["loss"] == plain[0]["loss"]
    assert history[0]["accuracy"] == plain[0]["accuracy"]


class LossOnly(Trainer):
    def training_step(self, batch: Batch, batch_idx: int) -> StepOutput:
        outputs = super().training_step(batch, batch_idx)
        return {"loss": outputs["loss"]}  # type: ignore[return-value]


def test_a_step_that_drops_the_parts_is_refused_rather_than_losing_metrics() -> None:
    with pytest.raises(TypeError, match=r"return the StepOutput of super\(\).training_step"):
        LossOnly(max_epochs=1, batch_size=8, progress=False).fit(_model(), _data())
