"""The Trainer's less common settings: every keyword of ``Trainer(...)`` still works."""

from __future__ import annotations

import dataclasses
import inspect
import io
from pathlib import Path
from typing import Any

import pytest
import torch

from rnnkit.callbacks import ProgressBar
from rnnkit.models import SequenceClassifier
from rnnkit.training import TrainerOptions
from rnnkit.training._options import _TrainerKeywords
from rnnkit.training.trainer import Trainer

# Every keyword argument Trainer(...) has taken, with a value other than its default. The
# constructor now names the common ones and collects the rest into ``**options``; a user's
# call must not notice.
EVERY_KEYWORD: dict[str, Any] = {
    "max_epochs": 2,
    "batch_size": 8,
    "optimizer": "sgd",
    "lr": 0.05,
    "weight_decay": 0.01,
    "scheduler": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
    "scheduler_interval": "step",
    "loss": torch.nn.functional.cross_entropy,
    "metrics": ["accuracy"],
    "device": "cpu",
    "strategy": "single",
    "precision": 32,
    "grad_clip_norm": 0.5,
    "seed": 3,
    "callbacks": [],
    "progress": False,
    "log_every_n_steps": 2,
    "teacher_forcing": 1.0,
    "tbptt_steps": None,
    "rollout_horizon": None,
    "fast_dev_run": False,
    "overfit_batches": 2,
    "on_nan": "skip",
    "default_root_dir": "elsewhere",
    "shuffle": False,
    "task": None,
    "stateful": False,
}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, 3, generator=gen)
    return x, (x[:, :, 0].sum(dim=1) > 0).long()


def test_every_keyword_is_a_parameter_or_an_option() -> None:
    named = set(inspect.signature(Trainer).parameters) - {"options"}
    options = {field.name for field in dataclasses.fields(TrainerOptions)}
    assert not named & options
    assert named | options == set(EVERY_KEYWORD)


def test_the_typed_keywords_match_the_options() -> None:
    fields = [field.name for field in dataclasses.fields(TrainerOptions)]
    assert list(_TrainerKeywords.__annotations__) == fields
    assert _TrainerKeywords.__total__ is False


def test_every_old_keyword_type_checks_as_before() -> None:
    # Spelled out so that mypy checks each keyword against the type it always had.
    trainer = Trainer(
        max_epochs=1,
        batch_size=8,
        optimizer="sgd",
        lr=0.1,
        scheduler=None,
        scheduler_interval="epoch",
        loss=None,
        metrics=None,
        device=torch.device("cpu"),
        strategy="single",
        precision=32,
        grad_clip_norm=None,
        seed=0,
        callbacks=None,
        progress=False,
        log_every_n_steps=50,
        teacher_forcing=lambda epoch: 1.0,
        tbptt_steps=None,
        rollout_horizon=None,
        fast_dev_run=False,
        overfit_batches=0,
        on_nan="raise",
        default_root_dir=Path("runs"),
        shuffle=True,
        task=None,
        stateful=False,
    )
    assert trainer.options.device == torch.device("cpu")
    assert callable(trainer.options.teacher_forcing)


def test_every_old_keyword_still_trains() -> None:
    trainer = Trainer(**EVERY_KEYWORD)
    history = trainer.fit(SequenceClassifier(3, 2, 8), _data())
    assert len(history) == 2
    assert trainer.global_step == 2 * 2  # overfit_batches=2 per epoch
    assert trainer.scheduler is not None
    assert trainer.scheduler.get_last_lr() == [0.05 * 0.5**4]  # stepped per optimizer step


def test_options_hold_the_keywords_normalised() -> None:
    trainer = Trainer(**EVERY_KEYWORD)
    opts = trainer.options
    assert opts.precision == "32"
    assert opts.default_root_dir == Path("elsewhere")
    assert (opts.grad_clip_norm, opts.on_nan, opts.shuffle) == (0.5, "skip", False)
    assert (opts.log_every_n_steps, opts.overfit_batches) == (2, 2)
    assert Trainer(fast_dev_run=True).options.fast_dev_run == 1
    assert Trainer().options == TrainerOptions()


def test_the_defaults_are_those_of_the_options() -> None:
    opts = Trainer().options
    for field in dataclasses.fields(TrainerOptions):
        assert getattr(opts, field.name) == field.default, field.name


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Trainer().options.tbptt_steps = 4  # type: ignore[misc]


def test_an_unknown_keyword_is_refused_with_the_closest_name() -> None:
    with pytest.raises(TypeError, match=r"'tbtt_steps'.*did you mean 'tbptt_steps'"):
        Trainer(tbtt_steps=4)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"'max_epoch'.*did you mean 'max_epochs'"):
        Trainer(max_epoch=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("keyword", "value", "error"),
    [
        ("log_every_n_steps", 0, ValueError),
        ("tbptt_steps", 0, ValueError),
        ("on_nan", "ignore", ValueError),
        ("scheduler_interval", "batch", ValueError),
        ("precision", "64", ValueError),
        ("grad_clip_norm", True, TypeError),
        ("teacher_forcing", 1.5, ValueError),
        ("fast_dev_run", 2.5, TypeError),
        ("lr", "1e-3", TypeError),
        ("lr", 0.0, ValueError),
        ("lr", float("nan"), ValueError),
        ("grad_clip_norm", "1.0", TypeError),
        ("grad_clip_norm", -1.0, ValueError),
        ("fast_dev_run", -1, ValueError),
    ],
)
def test_a_bad_option_names_itself(keyword: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=keyword):
        Trainer(**{keyword: value})


def test_the_progress_bar_reads_log_every_n_steps_from_the_options() -> None:
    bar = ProgressBar(file=io.StringIO())
    trainer = Trainer(max_epochs=1, batch_size=8, callbacks=[bar], log_every_n_steps=3)
    trainer.fit(SequenceClassifier(3, 2, 8), _data())
    assert bar._every == 3


def test_a_wrongly_typed_option_is_caught_by_the_type_checker_and_at_construction() -> None:
    # The ignore comment is itself checked: mypy (warn_unused_ignores) fails if the keyword
    # were not typed.
    with pytest.raises(TypeError, match="tbptt_steps"):
        Trainer(tbptt_steps="4")  # type: ignore[arg-type]
