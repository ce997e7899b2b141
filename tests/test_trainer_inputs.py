"""What the Trainer accepts (data forms, options) and the errors it raises before training."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from rnnkit.callbacks import Callback, ProgressBar
from rnnkit.data import Batch, SequenceDataset, collate_padded
from rnnkit.errors import ShapeError
from rnnkit.models import Seq2SeqRegressor, SequenceClassifier
from rnnkit.training.trainer import Trainer


def _class_data(n: int = 40, steps: int = 5, width: int = 3) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, steps, width, generator=gen)
    return x, (x[:, :, 0].sum(dim=1) > 0).long()


def _classifier(width: int = 3, classes: int = 2) -> SequenceClassifier:
    torch.manual_seed(1)
    return SequenceClassifier(width, classes, 8)


def _regressor(width: int = 1) -> Seq2SeqRegressor:
    torch.manual_seed(1)
    return Seq2SeqRegressor(width, hidden_size=8)


def _weights(model: torch.nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[Tensor], b: list[Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def _fit_unshuffled(data: Any) -> list[Tensor]:
    model = _classifier()
    Trainer(max_epochs=2, batch_size=8, shuffle=False, progress=False).fit(model, data)
    return _weights(model)


# -- data forms -----------------------------------------------------------------------------


def test_every_data_form_gives_the_same_training() -> None:
    """Tensors, arrays, a dataset, a DataLoader and a list of batches: one result."""
    x, y = _class_data()
    reference = _fit_unshuffled((x, y))
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)
    batches = [Batch(x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)]
    dicts = [{"x": x[i : i + 8], "y": y[i : i + 8]} for i in range(0, 40, 8)]
    for data in ((x.numpy(), y.numpy()), SequenceDataset(x, y), loader, batches, dicts):
        assert _same(_fit_unshuffled(data), reference), type(data).__name__


def test_padded_variable_length_data_through_collate_padded() -> None:
    """A DataLoader of variable-length samples trains like the padded dataset."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 7, (24,), generator=gen)
    seqs = [torch.randn(int(n), 3, generator=gen) for n in lengths]
    labels = torch.tensor([int(s[:, 0].sum() > 0) for s in seqs])
    padded = torch.zeros(24, 6, 3)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    reference = _fit_unshuffled(SequenceDataset(padded, labels, lengths))
    samples = list(zip(seqs, labels, strict=True))
    loader: DataLoader[Any] = DataLoader(samples, batch_size=8, collate_fn=collate_padded)  # type: ignore[arg-type]
    got = _fit_unshuffled(loader)
    for p, q in zip(got, reference, strict=True):
        torch.testing.assert_close(p, q)  # batches trimmed alike; packing may reorder sums


def test_a_regressor_trains_on_padded_batches_with_masked_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 8, 1, generator=gen)
    lengths = torch.tensor([8, 3, 5, 8, 2, 6, 8, 1, 7, 4])
    y_clean, y_noisy = x.roll(-1, dims=1), x.roll(-1, dims=1).clone()
    for i, n in enumerate(lengths.tolist()):
        y_noisy[i, n:] = 1e6  # garbage after the end must not reach the loss
    models = [_regressor(), _regressor()]
    for model, y in zip(models, (y_clean, y_noisy), strict=True):
        trainer = Trainer(max_epochs=2, batch_size=4, seed=0, progress=False)
        history = trainer.fit(model, (x, y, lengths))
        assert history["loss"][-1] < 10
    assert _same(_weights(models[0]), _weights(models[1]))


def test_many_to_one_targets_score_the_last_steps() -> None:
    """Targets (N, 1, H_y) belong to the output's last step (windows(mode="many_to_one"))."""
    x = torch.randn(6, 5, 1)
    y = torch.randn(6, 1, 1)
    model = _regressor()
    metrics = Trainer(batch_size=4, progress=False).evaluate(model, (x, y))
    with torch.no_grad():
        out, _ = model(x)
    assert metrics["loss"] == pytest.approx(float(F.mse_loss(out[:, -1:], y)), rel=1e-5)


def test_progress_bar_is_added_once() -> None:
    assert sum(isinstance(c, ProgressBar) for c in Trainer().callbacks) == 1
    mine = ProgressBar(enabled=False)
    assert Trainer(callbacks=[mine]).callbacks == [mine]
    assert Trainer(progress=False).callbacks == []


# -- options ----------------------------------------------------------------------------------


def _hand_loop(
    make_optimizer: Any, clip: float | None = None, scheduler: Any = None
) -> tuple[list[Tensor], list[float]]:
    x, y = _class_data()
    model = _classifier()
    optimizer = make_optimizer(model.parameters())
    sched = None if scheduler is None else scheduler(optimizer)
    lrs = []
    for _ in range(3):
        lrs.append(optimizer.param_groups[0]["lr"])
        for i in range(0, 40, 16):
            torch.autograd.backward(F.cross_entropy(model(x[i : i + 16]), y[i : i + 16]))
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            optimizer.zero_grad()
        if sched is not None:
            sched.step()
    return _weights(model), lrs


def _fit_options(**options: Any) -> tuple[list[Tensor], list[float]]:
    x, y = _class_data()
    model = _classifier()
    trainer = Trainer(max_epochs=3, batch_size=16, shuffle=False, progress=False, **options)
    history = trainer.fit(model, (x, y))
    return _weights(model), history["lr"]


def test_optimizer_clipping_and_scheduler_match_a_hand_loop() -> None:
    def sgd(params: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=0.5, momentum=0.9)

    def step_lr(opt: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    weights, lrs = _fit_options(optimizer=sgd, grad_clip_norm=0.1, scheduler=step_lr)
    expected, expected_lrs = _hand_loop(sgd, clip=0.1, scheduler=step_lr)
    assert _same(weights, expected)
    assert lrs == expected_lrs == [0.5, 0.25, 0.125]


def test_named_optimizers_use_lr() -> None:
    weights, lrs = _fit_options(optimizer="sgd", lr=0.3)
    expected, _ = _hand_loop(lambda p: torch.optim.SGD(p, lr=0.3))
    assert _same(weights, expected)
    assert lrs == [0.3] * 3


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_adam_and_adamw_are_fused_where_torch_allows(name: str, cls: type) -> None:
    weights, _ = _fit_options(optimizer=name, lr=0.01)
    expected, _ = _hand_loop(lambda p: cls(p, lr=0.01, fused=True))
    assert _same(weights, expected)
    trainer = Trainer(optimizer=name, progress=False)
    optimizer = trainer.configure_optimizer(_classifier())
    assert isinstance(optimizer, cls)
    assert optimizer.defaults["fused"] is True


@pytest.mark.parametrize(
    ("name", "cls"),
    [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)],
)
def test_weight_decay_reaches_the_named_optimizer(name: str, cls: type) -> None:
    weights, _ = _fit_options(optimizer=name, lr=0.01, weight_decay=0.5)
    fused = {"fused": True} if name != "sgd" else {}
    expected, _ = _hand_loop(lambda p: cls(p, lr=0.01, weight_decay=0.5, **fused))
    assert _same(weights, expected)
    plain, _ = _fit_options(optimizer=name, lr=0.01)
    assert not _same(weights, plain)


@pytest.mark.parametrize(("name", "default"), [("adamw", 0.01), ("adam", 0.0), ("rmsprop", 0.0)])
def test_weight_decay_none_keeps_torchs_default(name: str, default: float) -> None:
    optimizer = Trainer(optimizer=name, progress=False).configure_optimizer(_classifier())
    assert optimizer.defaults["weight_decay"] == default
    decayed = Trainer(optimizer=name, weight_decay=0, progress=False)
    assert decayed.configure_optimizer(_classifier()).defaults["weight_decay"] == 0


def test_parameters_the_fused_kernel_refuses_get_torchs_default_adam() -> None:
    model = nn.Module()
    model.weight = nn.Parameter(torch.zeros(2, dtype=torch.complex64))  # fused step() raises
    optimizer = Trainer(progress=False).configure_optimizer(model)
    assert isinstance(optimizer, torch.optim.Adam)
    assert not optimizer.defaults["fused"]


def test_a_step_scheduler_steps_after_every_optimizer_step() -> None:
    def decay(opt: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)

    _, lrs = _fit_options(lr=1.0, scheduler=decay, scheduler_interval="step")
    assert lrs == [1.0, 0.125, 0.125**2]  # 3 steps per epoch


def test_reduce_on_plateau_per_step_is_refused_before_training() -> None:
    model = _classifier()
    before = _weights(model)
    trainer = Trainer(
        scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=2),
        scheduler_interval="step",
        progress=False,
    )
    with pytest.raises(
        ValueError, match=r"^Expected `scheduler_interval='epoch'` for a ReduceLROnPlateau"
    ):
        trainer.fit(model, _class_data())
    assert _same(_weights(model), before)
    assert trainer.global_step == 0


def test_bf16_mixed_precision_trains_on_the_cpu() -> None:
    x, y = _class_data(n=64)
    trainer = Trainer(max_epochs=3, batch_size=16, lr=1e-2, precision="bf16-mixed", progress=False)
    model = _classifier()
    history = trainer.fit(model, (x, y))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert history["loss"][-1] < history["loss"][0]
    assert trainer.predict(model, x).dtype == torch.float32


def test_bf16_with_tbptt_and_scheduled_sampling_carries_a_float32_state() -> None:
    # The fed-back predictions of a rollout under autocast are bfloat16, and so is the state
    # they leave; the next TBPTT window must still get a state in the inputs' dtype.
    torch.manual_seed(0)
    series = torch.sin(torch.linspace(0, 12, 49)).reshape(1, 49, 1).repeat(8, 1, 1)
    x, y = series[:, :-1], series[:, 1:]
    trainer = Trainer(
        max_epochs=2,
        batch_size=4,
        precision="bf16-mixed",
        tbptt_steps=12,
        teacher_forcing=0.5,
        seed=0,
        progress=False,
    )
    history = trainer.fit(_regressor(), (x, y))
    assert len(history) == 2
    assert all(np.isfinite(history["loss"]))


# -- errors before training -------------------------------------------------------------------


class NeverCalled(Callback):
    def on_fit_start(self, trainer: Any) -> None:
        raise AssertionError("training started despite bad input")


def _fit_bad(model: torch.nn.Module, train: Any, val: Any = None, **options: Any) -> None:
    before = _weights(model)
    trainer = Trainer(
        max_epochs=1, batch_size=4, progress=False, callbacks=[NeverCalled()], **options
    )
    try:
        trainer.fit(model, train, val)
    finally:
        assert _same(_weights(model), before)


def test_class_indices_given_to_a_regressor() -> None:
    x, y = _class_data()
    with pytest.raises(ValueError, match=r"per-step targets \(N, L, H_y\) for a Seq2SeqRegressor"):
        _fit_bad(_regressor(3), (x, y))


def test_per_step_targets_given_to_a_classifier() -> None:
    x = torch.randn(8, 5, 3)
    with pytest.raises(ValueError, match=r"class indices \(N,\) for a SequenceClassifier"):
        _fit_bad(_classifier(), (x, torch.randn(8, 5, 1)))


def test_num_classes_smaller_than_the_largest_label() -> None:
    x = torch.randn(8, 5, 3)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 9])
    with pytest.raises(ValueError, match=r"model's num_classes = 5\), but they go up to 9"):
        _fit_bad(_classifier(classes=5), (x, y))


def test_a_dataset_of_the_wrong_sequence_width() -> None:
    x, y = torch.randn(8, 28, 1), torch.randint(0, 2, (8,))
    with pytest.raises(ShapeError, match=r"\(N, L, H_in\) = \(\?, \?, 28\).*got \(\?, 28, 1\)"):
        _fit_bad(SequenceClassifier(28, 2, 8), (x, y))


def test_image_batches_with_a_channel_axis() -> None:
    loader = [(torch.rand(4, 1, 28, 28), torch.randint(0, 2, (4,)))]
    with pytest.raises(ShapeError, match=r"x.squeeze\(1\)"):
        _fit_bad(SequenceClassifier(28, 2, 8), loader)


def test_an_empty_dataset() -> None:
    with pytest.raises(ValueError, match="at least one batch, but it is empty"):
        _fit_bad(_classifier(), [])
    empty_loader = DataLoader(
        TensorDataset(torch.randn(0, 5, 3), torch.zeros(0).long()), batch_size=4
    )
    with pytest.raises(ValueError, match="empty"):
        _fit_bad(_classifier(), empty_loader)


def test_data_without_targets() -> None:
    with pytest.raises(ValueError, match="holds inputs only"):
        _fit_bad(_classifier(), torch.randn(8, 5, 3))
    message = r"^Expected `data` to hold targets for the loss and metrics, .*predict\(\) takes"
    with pytest.raises(ValueError, match=message):
        Trainer(progress=False).evaluate(_classifier(), torch.randn(8, 5, 3))


def test_a_validation_set_of_another_shape_than_train() -> None:
    x, y = _class_data()
    with pytest.raises(ShapeError, match="Expected `val` to be laid out like `train`"):
        _fit_bad(_classifier(), (x, y), val=(torch.randn(8, 5, 4), y[:8]))
    with pytest.raises(ShapeError, match="`val`"):
        _fit_bad(_classifier(), (x, y), val=(x[:8], torch.randn(8, 5, 1)))


def test_a_one_shot_iterator() -> None:
    x, y = _class_data()
    with pytest.raises(TypeError, match="re-iterable"):
        _fit_bad(_classifier(), iter([(x, y)]))


def test_options_that_need_a_regressor() -> None:
    x, y = _class_data()
    with pytest.raises(ValueError, match="`tbptt_steps` only for a Seq2SeqRegressor"):
        _fit_bad(_classifier(), (x, y), tbptt_steps=2)
    with pytest.raises(ValueError, match="metrics for a SequenceClassifier"):
        _fit_bad(_classifier(), (x, y), metrics=["mse"])


def test_rollout_needs_feedback_and_long_enough_validation() -> None:
    x = torch.randn(8, 5, 2)
    with pytest.raises(ValueError, match="output_size == input_size"):
        _fit_bad(Seq2SeqRegressor(2, 1, 8), (x, x[..., :1]), teacher_forcing=0.5)
    w = torch.randn(8, 5, 1)
    with pytest.raises(ValueError, match="at least rollout_horizon = 9 steps"):
        _fit_bad(_regressor(), (w, w), val=(w, w), rollout_horizon=9)


def test_a_loaders_later_batch_meets_the_windows_rules_of_the_first() -> None:
    x, y = torch.randn(4, 6, 1), torch.randn(4, 6, 1)
    full = Batch(x[:2], y[:2], None)
    short = [full, Batch(x[2:], y[2:, :2], None)]  # 2-step targets in batch 1 only
    trainer = Trainer(progress=False, tbptt_steps=2)
    with pytest.raises(ValueError, match=r"Batch 1 .* `data` has 2-step targets"):
        trainer.evaluate(_regressor(), short)
    padded = [full, Batch(x[2:], y[2:], torch.tensor([6, 2]))]
    trainer = Trainer(progress=False, rollout_horizon=3)
    with pytest.raises(ValueError, match=r"Batch 1 .* unpadded sequences .* \(padded: True\)"):
        trainer.evaluate(_regressor(), padded)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, r"`batch_size` >= 1, but got 0"),
        ({"max_epochs": 0}, r"`max_epochs` >= 1"),
        (
            {"optimizer": "adagradx"},
            r"`optimizer` to be one of \['adam', 'adamw', 'rmsprop', 'sgd'\]",
        ),
        ({"precision": "8-mixed"}, r"`precision` to be one of \['32', 'bf16-mixed', '16-mixed'\]"),
        ({"precision": "16-mixed", "device": "cpu"}, r"CUDA device for precision='16-mixed'"),
        ({"metrics": ["f1"]}, r"metric name in"),
        ({"on_nan": "ignore"}, r"`on_nan` to be one of"),
        ({"teacher_forcing": 1.5}, r"ratio in \[0, 1\]"),
        ({"lr": 0}, r"`lr` to be a positive finite number"),
        ({"lr": float("inf")}, r"`lr` to be a positive finite number, but got inf"),
        ({"device": "gpu"}, r"^Expected `device` to be 'auto', 'cpu', 'cuda', 'cuda:i' or a "),
        ({"grad_clip_norm": -1.0}, r"`grad_clip_norm` > 0"),
        ({"weight_decay": -0.1}, r"`weight_decay` to be a finite number >= 0 or None"),
        ({"weight_decay": float("inf")}, r"`weight_decay` to be a finite number >= 0 or None"),
        (
            {"weight_decay": 0.1, "optimizer": lambda p: torch.optim.SGD(p, lr=0.1)},
            r"^Expected `weight_decay` only with a named optimizer, but got weight_decay=0.1 "
            r"with a callable `optimizer`, which builds its own\. Hint: pass it to the optimizer",
        ),
    ],
)
def test_bad_arguments_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trainer(**options)


def test_an_unavailable_device_fails_at_construction() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        Trainer(device="cuda")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grad_clip_norm": True}, r"`grad_clip_norm` to be a number > 0 or None, but got True"),
        ({"callbacks": [object()]}, r"`callbacks\[0\]` to be an rnnkit.Callback, but got a object"),
        ({"callbacks": ProgressBar()}, r"`callbacks` to be a list of rnnkit.Callback objects"),
    ],
)
def test_a_bool_clip_norm_or_a_non_callback_is_a_type_error_at_construction(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        Trainer(**options)


def test_a_non_callable_scheduler_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="`scheduler` to be None or a callable"):
        Trainer(scheduler="step")  # type: ignore[arg-type]


def test_numpy_float64_inputs_are_accepted() -> None:
    x, y = _class_data()
    model = _classifier()
    Trainer(max_epochs=1, progress=False).fit(
        model, (x.double().numpy(), y.numpy().astype(np.int32))
    )
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_time_major_model_trains_like_a_batch_first_one() -> None:
    """The Trainer feeds (N, L, H_in) and transposes for batch_first=False models."""
    x, y = _class_data(n=20)
    waves = torch.sin(torch.linspace(0, 6, 13) + torch.linspace(0, 3, 6)[:, None])[..., None]
    results = []
    for batch_first in (True, False):
        torch.manual_seed(0)
        classifier = SequenceClassifier(3, 2, 8, batch_first=batch_first)
        Trainer(max_epochs=2, batch_size=5, seed=0, progress=False).fit(classifier, (x, y))
        torch.manual_seed(0)
        regressor = Seq2SeqRegressor(1, hidden_size=4, batch_first=batch_first)
        trainer = Trainer(
            max_epochs=2, batch_size=3, seed=0, tbptt_steps=5, teacher_forcing=0.5, progress=False
        )
        history = trainer.fit(regressor, (waves[:, :-1], waves[:, 1:]))
        predicted = trainer.predict(regressor, waves)
        results.append((_weights(classifier), _weights(regressor), history["loss"], predicted))
    assert _same(results[0][0], results[1][0])
    assert _same(results[0][1], results[1][1])
    assert results[0][2] == results[1][2]
    assert torch.equal(results[0][3], results[1][3])
    assert results[0][3].shape == (6, 13, 1)


@pytest.mark.parametrize("name", ["shuffle", "stateful", "progress"])
def test_switches_must_be_bools_not_truthy_strings(name: str) -> None:
    options: dict[str, Any] = {name: "False"}
    with pytest.raises(TypeError, match=f"^Expected `{name}` to be a bool, but got str 'False'"):
        Trainer(**options)


def test_a_scheduler_factory_must_return_a_scheduler_of_its_optimizer() -> None:
    model = SequenceClassifier(2, 2, 4)
    x, y = torch.randn(8, 3, 2), torch.randint(0, 2, (8,))
    before = [p.detach().clone() for p in model.parameters()]
    lightning_style = lambda opt: {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}  # noqa: E731
    for factory in (lightning_style, lambda opt: opt):
        trainer = Trainer(max_epochs=1, progress=False, scheduler=factory)
        with pytest.raises(TypeError, match="to return a learning-rate scheduler of the optimizer"):
            trainer.fit(model, (x, y))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(("which", "k"), [("y", 1), ("x", 0)])
def test_a_pair_holding_a_list_names_the_part(which: str, k: int) -> None:
    x, y = torch.randn(8, 5, 3), torch.randint(0, 2, (8,))
    pair: list[Any] = [x, y]
    pair[k] = pair[k].tolist()
    message = (
        rf"`train` = \(x, y\[, lengths\]\) to hold tensors or arrays, but its {which} is a list"
    )
    with pytest.raises(TypeError, match=message):
        Trainer(progress=False).fit(_classifier(), tuple(pair))
    assert Trainer(progress=False).predict(_classifier(), (x, None)).shape == (8, 2)


# torch warns once per process that a projected LSTM bypasses oneDNN
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_bf16_on_the_cpu_refuses_an_lstm_before_training_where_torch_cannot_run_it() -> None:
    from rnnkit.training._precision import _cpu_bf16_lstm_runs

    x, y = torch.randn(8, 5, 3), torch.randint(0, 2, (8,))
    model = SequenceClassifier(3, 2, 8, cell="lstm")
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(max_epochs=1, progress=False, precision="bf16-mixed", device="cpu")
    if _cpu_bf16_lstm_runs():  # this machine's torch runs it: training works
        trainer.fit(model, (x, y))
        return
    with pytest.raises(ValueError, match=r"precision='bf16-mixed'.*Hint: use precision='32'"):
        trainer.fit(model, (x, y))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="bfloat16 LSTM"):
        trainer.predict(model, x)
    gru = SequenceClassifier(3, 2, 8, cell="gru")
    trainer.fit(gru, (x, y))  # other cells are unaffected
    projected = SequenceClassifier(3, 2, 8, cell="lstm", proj_size=4, kernel="torch")
    trainer.fit(projected, (x, y))  # torch runs a projected LSTM without oneDNN
