"""The Trainer's checks of its arguments, its model and its data, all before training starts.

Each check raises an error that says what was expected, what came, and how to fix it, so a
bad set-up fails in the first second instead of after an epoch (or with a torch error deep in
a kernel).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from rnnkit.errors import ShapeError
from rnnkit.metrics import Metric, get_metric
from rnnkit.models.base import RecurrentModel
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.regressor import Seq2SeqRegressor
from rnnkit.models.tagger import SequenceTagger
from rnnkit.training._batches import BatchSource, DataInfo, IndexedSource

__all__ = [
    "check_choice",
    "check_data",
    "check_int",
    "check_metric_kinds",
    "check_misc",
    "check_optimizer",
    "check_ratio",
    "check_regressor_options",
    "check_shardable",
    "check_val_like_train",
    "check_width",
    "model_kind",
    "resolve_metrics",
]


def check_int(name: str, value: object, minimum: int, *, optional: bool = False) -> None:
    """Raise unless ``value`` is an int >= ``minimum`` (or ``None`` when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected `{name}` to be an int, but got {value!r}.")
    if value < minimum:
        raise ValueError(f"Expected `{name}` >= {minimum}, but got {value}.")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"Expected `{name}` to be one of {list(choices)}, but got {value!r}.")


def check_optimizer(optimizer: object, names: Collection[str]) -> None:
    """Raise unless ``optimizer`` is one of ``names`` or a callable."""
    if callable(optimizer) or optimizer in names:
        return
    raise ValueError(
        f"Expected `optimizer` to be one of {sorted(names)} or a callable "
        f"`params -> torch.optim.Optimizer`, but got {optimizer!r}. Hint: e.g. "
        "optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)."
    )


def check_misc(lr: object, clip: object, fast_dev_run: object, scheduler: object) -> None:
    """Check ``lr``, ``grad_clip_norm``, ``fast_dev_run`` and ``scheduler``."""
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise ValueError(f"Expected `lr` to be a positive number, but got {lr!r}.")
    if clip is not None and (not isinstance(clip, int | float) or not clip > 0):
        raise ValueError(f"Expected `grad_clip_norm` > 0 or None, but got {clip!r}.")
    if not isinstance(fast_dev_run, bool | int) or fast_dev_run < 0:
        raise ValueError(
            f"Expected `fast_dev_run` to be a bool or an int >= 0, got {fast_dev_run!r}."
        )
    if scheduler is not None and not callable(scheduler):
        raise TypeError(
            f"Expected `scheduler` to be None or a callable `optimizer -> LRScheduler`, but "
            f"got {scheduler!r}. Hint: scheduler=lambda opt: StepLR(opt, step_size=5)."
        )


def check_ratio(value: object) -> None:
    """Raise unless ``value`` is a teacher-forcing ratio in [0, 1] or a callable schedule."""
    if callable(value):
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(
            f"Expected `teacher_forcing` to be a ratio in [0, 1] or a schedule "
            f"`epoch -> ratio`, but got {value!r}. Hint: 1.0 is the tutorial's teacher forcing."
        )


def model_kind(model: object) -> tuple[RecurrentModel, str]:
    """The model, typed, and ``"classifier"``, ``"tagger"`` or ``"regressor"``.

    Raises:
        TypeError: For anything but an rnnkit model.
    """
    if isinstance(model, SequenceClassifier):
        return model, "classifier"
    if isinstance(model, Seq2SeqRegressor):
        return model, "regressor"
    if isinstance(model, SequenceTagger):
        return model, "tagger"
    raise TypeError(
        f"Expected `model` to be an rnnkit SequenceClassifier, SequenceTagger or "
        f"Seq2SeqRegressor (or a subclass), but got {type(model).__name__}. Hint: build the "
        "network with one of them; other modules need a Trainer subclass that overrides "
        "training_step."
    )


def resolve_metrics(metrics: Sequence[str | Metric] | None) -> list[Metric] | None:
    """Metric objects for the given names (``None`` keeps the model's defaults).

    Raises:
        ValueError: For an unknown metric name.
        TypeError: For something that is neither a name nor a :class:`~rnnkit.metrics.Metric`.
    """
    if metrics is None:
        return None
    if isinstance(metrics, str):
        metrics = [metrics]
    resolved = []
    for metric in metrics:
        if isinstance(metric, str):
            resolved.append(get_metric(metric))
        elif isinstance(metric, Metric):
            resolved.append(metric)
        else:
            raise TypeError(
                f"Expected each metric to be a name such as 'accuracy' or an "
                f"rnnkit.metrics.Metric, but got {metric!r}."
            )
    return resolved


def check_metric_kinds(kind: str, metrics: Sequence[Metric]) -> None:
    """Raise when a metric needs the other kind of target (accuracy for a regressor)."""
    wanted = "step" if kind == "regressor" else "class"
    for metric in metrics:
        if metric.target_kind != wanted:
            raise ValueError(
                f"Expected metrics for a {_model_name(kind)} ({wanted} targets), but got "
                f"{metric.name!r}, a metric for {metric.target_kind} targets. Hint: "
                "'accuracy'/'top5_accuracy' suit classifiers and taggers, 'mse'/'mae' regressors."
            )


_MODEL_NAMES = {
    "classifier": "SequenceClassifier",
    "tagger": "SequenceTagger",
    "regressor": "Seq2SeqRegressor",
}
_TARGET_KINDS = {"classifier": "class", "tagger": "tag", "regressor": "step"}


def _model_name(kind: str) -> str:
    return _MODEL_NAMES[kind]


def check_data(model: RecurrentModel, kind: str, info: DataInfo, name: str) -> None:
    """Check a data set against the model: targets, sequence width, class count, H_y.

    Raises:
        ValueError: No targets, the wrong kind of target, or labels beyond ``num_classes``.
        rnnkit.ShapeError: The wrong sequence width H_in or target size H_y.
    """
    _check_target_kind(kind, info, name)
    check_width(model, info, name)
    if kind == "tagger":
        _check_tag_targets(model, info, name)
    if kind != "regressor":
        _check_classes(model, info, name)
    else:
        _check_step_targets(model, info, name)


def check_width(model: RecurrentModel, info: DataInfo, name: str) -> None:
    """Raise :class:`~rnnkit.ShapeError` when the sequences' H_in is not the model's."""
    spec = model.spec
    if info.input_size != spec.input_size:
        raise ShapeError(
            f"Expected `{name}` to hold sequences of shape (N, L, H_in) = (?, ?, "
            f"{spec.input_size}) for the model's input_size = {spec.input_size}, but got "
            f"(?, {info.seq_len}, {info.input_size}). Hint: build the model with input_size="
            f"{info.input_size}, or check how the data was turned into sequences "
            "(rows of an image: H_in = width)."
        )


def _check_target_kind(kind: str, info: DataInfo, name: str) -> None:
    if info.target_kind is None:
        raise ValueError(
            f"Expected `{name}` to hold targets for training, but it holds inputs only. "
            "Hint: pass (x, y), or a SequenceDataset built with y."
        )
    wanted = _TARGET_KINDS[kind]
    if info.target_kind == wanted:
        return
    fix = _TARGET_FIXES[kind, info.target_kind]
    raise ValueError(
        f"Expected `{name}` to hold {_targets(wanted)} for a {_model_name(kind)}, but it holds "
        f"{info.layout()}. Hint: {fix}."
    )


_TARGET_FIXES = {
    ("classifier", "step"): "use a Seq2SeqRegressor for per-step values, or give one label per "
    "sequence",
    ("classifier", "tag"): "use a SequenceTagger for a class label at every step, or give one "
    "label per sequence",
    ("tagger", "class"): "use a SequenceClassifier for one label per sequence, or give a label "
    "at every step, (N, L) int64 with -100 at steps to skip",
    ("tagger", "step"): "use a Seq2SeqRegressor for per-step values, or give per-step class "
    "indices (N, L) int64 (y.squeeze(-1).long() if they are stored as (N, L, 1))",
    ("regressor", "class"): "use a SequenceClassifier for class labels, or give per-step values "
    "(N, L, H_y)",
    ("regressor", "tag"): "use a SequenceTagger for per-step class labels, or give per-step "
    "values (N, L, H_y) (y.unsqueeze(-1).float())",
}


def _targets(kind: str) -> str:
    return {
        "class": "class indices (N,)",
        "tag": "per-step class indices (N, L)",
        "step": "per-step targets (N, L, H_y)",
    }[kind]


def _check_tag_targets(model: RecurrentModel, info: DataInfo, name: str) -> None:
    target_len = info.target_len
    if target_len is not None and target_len != info.seq_len:
        raise ShapeError(
            f"Expected the per-step class targets of `{name}` to have shape (N, L) = (?, "
            f"{info.seq_len}), a label for every step of x, but got (?, {target_len}). "
            "Hint: label every step, with -100 at steps to skip."
        )


def _check_classes(model: RecurrentModel, info: DataInfo, name: str) -> None:
    assert isinstance(model, SequenceClassifier | SequenceTagger)
    num_classes = model.num_classes
    if info.num_classes is not None and info.num_classes > num_classes:
        raise ValueError(
            f"Expected the labels of `{name}` in 0..C-1 = 0..{num_classes - 1} (the model's "
            f"num_classes = {num_classes}), but they go up to {info.num_classes - 1}. Hint: "
            f"build the model with num_classes = {info.num_classes} (the largest label + 1)."
        )


def _check_step_targets(model: RecurrentModel, info: DataInfo, name: str) -> None:
    assert isinstance(model, Seq2SeqRegressor)
    output_size = model.output_size
    if info.target_size != output_size:
        raise ShapeError(
            f"Expected the per-step targets of `{name}` to have shape (N, L, H_y) = (?, ?, "
            f"{output_size}) for the model's output_size = {output_size}, but got "
            f"(?, {info.target_len}, {info.target_size}). Hint: build the model with "
            f"output_size={info.target_size}."
        )
    if info.target_len is not None and info.target_len > info.seq_len:
        raise ShapeError(
            f"Expected the per-step targets of `{name}` to have at most L = {info.seq_len} "
            f"steps (the inputs' length), but got {info.target_len}. Hint: targets align with "
            "the last steps of the output; cut them to the inputs' length."
        )


def check_val_like_train(train: DataInfo, val: DataInfo) -> None:
    """Raise when the validation data differ in layout from the training data.

    Raises:
        rnnkit.ShapeError: Another H_in, kind of target or H_y.
    """
    same = (train.input_size, train.target_kind, train.target_size) == (
        val.input_size,
        val.target_kind,
        val.target_size,
    )
    if not same:
        raise ShapeError(
            f"Expected `val` to be laid out like `train`, {train.layout()}, but got "
            f"{val.layout()}. Hint: build both sets with the same adapter and options, e.g. "
            "with SequenceDataset.split."
        )


def check_regressor_options(
    model: RecurrentModel,
    kind: str,
    *,
    tbptt_steps: int | None,
    teacher_forcing: float | Callable[[int], float],
    rollout_horizon: int | None,
    infos: Sequence[tuple[str, DataInfo]],
) -> None:
    """Check the sequence-to-sequence options against the model and data.

    Raises:
        ValueError: An option given for a classifier, a teacher-forcing ratio below 1 or a
            rollout for a model that cannot feed its predictions back, a horizon longer than
            the validation sequences, or targets shorter than the inputs with TBPTT/padding.
    """
    options = {
        "tbptt_steps": tbptt_steps is not None,
        "teacher_forcing": teacher_forcing != 1.0,
        "rollout_horizon": rollout_horizon is not None,
    }
    if kind != "regressor":
        for option, given in options.items():
            if given:
                raise ValueError(
                    f"Expected `{option}` only for a Seq2SeqRegressor, but the model is a "
                    f"{type(model).__name__}. Hint: leave `{option}` at its default."
                )
        return
    if options["teacher_forcing"] or options["rollout_horizon"]:
        _check_feedback(model)
    for name, info in infos:
        _check_regressor_data(info, name, tbptt_steps, rollout_horizon)


def _check_feedback(model: RecurrentModel) -> None:
    assert isinstance(model, Seq2SeqRegressor)
    spec = model.spec
    if spec.bidirectional or model.output_size != spec.input_size:
        raise ValueError(
            f"Expected a unidirectional model with output_size == input_size to feed its "
            f"predictions back (teacher_forcing < 1 or rollout_horizon), but got "
            f"bidirectional={spec.bidirectional}, output_size={model.output_size}, "
            f"input_size={spec.input_size}. Hint: keep teacher_forcing=1.0 and "
            "rollout_horizon=None for this model."
        )


def _check_regressor_data(
    info: DataInfo, name: str, tbptt_steps: int | None, horizon: int | None
) -> None:
    short = info.target_len is not None and info.target_len != info.seq_len
    if short and (tbptt_steps is not None or not info.full_length):
        raise ValueError(
            f"Expected per-step targets as long as the inputs (L = {info.seq_len}) with "
            f"tbptt_steps or padded sequences, but `{name}` has {info.target_len}-step targets. "
            "Hint: give a target at every step."
        )
    if horizon is None or name == "train":
        return
    if horizon > info.seq_len or short or not info.full_length:
        raise ValueError(
            f"Expected `{name}` to hold unpadded sequences of at least rollout_horizon = "
            f"{horizon} steps with a target at every step, but got {info.layout()} "
            f"(padded: {not info.full_length}). Hint: lower rollout_horizon or pass "
            "equal-length windows, e.g. rnnkit.data.windows(...)."
        )


def check_shardable(
    sources: Sequence[BatchSource | None],
    train: DataInfo | None,
    tbptt_steps: int | None,
    world_size: int,
) -> None:
    """Under DDP: raise for data rnnkit cannot split over the processes.

    Raises:
        ValueError: An iterable of batches (only indexed data are sharded), or
            ``tbptt_steps`` with padded training sequences (the processes would run
            different numbers of windows, and DDP needs equal numbers of backward passes).
    """
    for source in sources:
        if source is not None and not isinstance(source, IndexedSource):
            raise ValueError(
                f"Expected `{source.name}` to be a SequenceDataset or an (x, y) pair of tensors "
                f"or arrays under DDP ({world_size} processes), but got an iterable of "
                "batches: rnnkit splits only data it can index over the processes. Hint: pass "
                "the tensors, or rnnkit.data.SequenceDataset(x, y), instead of a DataLoader."
            )
    if tbptt_steps is not None and train is not None and not train.full_length:
        raise ValueError(
            f"Expected sequences of one length in `train` with tbptt_steps={tbptt_steps} under "
            "DDP, but some are padded: the processes would run different numbers of TBPTT "
            "windows. Hint: train on equal-length windows (rnnkit.data.windows), or without "
            "tbptt_steps."
        )
