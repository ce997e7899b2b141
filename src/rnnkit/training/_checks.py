"""The Trainer's checks of its arguments, its model and its data, all before training starts.

Each check raises an error that says what was expected, what came, and how to fix it, so a
bad set-up fails in the first second instead of after an epoch (or with a torch error deep in
a kernel).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

from rnnkit._validate import check_int, check_number
from rnnkit.callbacks import Callback
from rnnkit.errors import ShapeError
from rnnkit.tasks import DataInfo
from rnnkit.training._batches import BatchSource, IndexedSource

__all__ = [
    "check_choice",
    "check_misc",
    "check_optimizer",
    "check_ratio",
    "check_shardable",
    "check_task_options",
    "check_val_like_train",
    "check_weight_decay",
]


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


def check_weight_decay(weight_decay: object, optimizer: object) -> None:
    """Raise unless ``weight_decay`` is None, or a finite number >= 0 for a named optimizer."""
    if weight_decay is None:
        return
    if not 0 <= check_number("weight_decay", weight_decay) < float("inf"):
        raise ValueError(
            f"Expected `weight_decay` to be a finite number >= 0 or None, but got "
            f"{weight_decay!r}. Hint: e.g. weight_decay=0.01; None keeps torch's default."
        )
    if callable(optimizer):
        raise ValueError(
            "Expected `weight_decay` only with a named optimizer, but got "
            f"weight_decay={weight_decay!r} with a callable `optimizer`, which builds its own. "
            "Hint: pass it to the optimizer you build, e.g. "
            "optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1)."
        )


def check_misc(lr: object, clip: object, fast_dev_run: object, scheduler: object) -> None:
    """Check ``lr``, ``grad_clip_norm``, ``fast_dev_run`` and ``scheduler``."""
    if not 0 < check_number("lr", lr) < math.inf:
        raise ValueError(f"Expected `lr` to be a positive finite number, but got {lr!r}.")
    if isinstance(clip, bool):
        raise TypeError(
            f"Expected `grad_clip_norm` to be a number > 0 or None, but got {clip!r}. Hint: "
            "it is the largest gradient norm kept, e.g. grad_clip_norm=1.0; None turns "
            "clipping off."
        )
    if clip is not None and not check_number("grad_clip_norm", clip) > 0:
        raise ValueError(f"Expected `grad_clip_norm` > 0 or None, but got {clip!r}.")
    if not isinstance(fast_dev_run, bool):
        check_int("fast_dev_run", fast_dev_run, 0)
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
            f"`epoch -> ratio`, but got {value!r}. Hint: 1.0 feeds the true input at every step."
        )


def check_task_options(task: object, **options: object) -> None:
    """With an explicit ``task``, raise for Trainer options that belong to the task.

    Raises:
        ValueError: ``loss``, ``metrics``, ``tbptt_steps`` or ``rollout_horizon`` given to the
            Trainer together with a task.
    """
    if task is None:
        return
    for option, value in options.items():
        if value is not None:
            raise ValueError(
                f"Expected `{option}` on the task when `task` is given, but got "
                f"Trainer({option}=..., task={type(task).__name__}(...)). Hint: pass it to the "
                f"task, e.g. {type(task).__name__}({option}=...)."
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


def check_callbacks(callbacks: object) -> None:
    """Raise unless ``callbacks`` is None or a sequence of :class:`~rnnkit.Callback` objects."""
    if callbacks is None:
        return
    if isinstance(callbacks, Callback) or not isinstance(callbacks, list | tuple):
        raise TypeError(
            f"Expected `callbacks` to be a list of rnnkit.Callback objects, but got a "
            f"{type(callbacks).__name__}. Hint: callbacks=[ModelCheckpoint(...)]."
        )
    for index, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(
                f"Expected `callbacks[{index}]` to be an rnnkit.Callback, but got a "
                f"{type(callback).__name__}. Hint: subclass rnnkit.Callback and override the "
                "hooks you need (on_epoch_end, on_batch_end, ...)."
            )
