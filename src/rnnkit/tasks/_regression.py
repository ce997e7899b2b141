"""Sequence-to-sequence regression: a value per step, optionally in TBPTT windows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data import Batch, valid_mask
from rnnkit.errors import ShapeError
from rnnkit.metrics import Metric, rollout_error
from rnnkit.models.regressor import Seq2SeqRegressor
from rnnkit.shapes import State
from rnnkit.tasks._base import (
    Chunk,
    LossFn,
    Parts,
    Task,
    _WindowCarry,
    state_as,
    time_major,
)
from rnnkit.tasks._info import DataInfo

__all__ = ["RegressionTask"]


class RegressionTask(Task):
    """Predict a value per step: ``model(x, h0, lengths)`` returns ``((N, L, H_y), h_n)``.

    The targets are per-step values ``(N, L_y, H_y)`` (``L_y < L``: the output's last ``L_y``
    steps); the default loss is the mean squared error over the valid steps and the default
    metric ``"mae"``. :class:`~rnnkit.Seq2SeqRegressor` gets this task automatically.
    Teacher forcing below 1 and ``rollout_horizon`` call the model's ``rollout`` and
    ``generate`` (a :class:`~rnnkit.Seq2SeqRegressor`'s).

    Args:
        loss: A user loss; with padded batches it gets only the valid steps, ``(M, H_y)``.
        metrics: Metric names or objects for per-step values; ``None``: ``["mae"]``.
        tbptt_steps: Window length k of truncated back-propagation, or ``None`` (full).
        rollout_horizon: Free-running steps scored in evaluation (``"rollout_mse"``), or
            ``None``.

    Shapes:
        - ``x``: ``(N, L, H_in)``; ``h0``: the model's state; output and ``y``:
          ``(N, L, H_y)``.
    """

    target_kind = "step"
    metric_kind = "step"
    default_metrics = ("mae",)
    padded_arguments = 3

    def __init__(
        self,
        loss: LossFn | None = None,
        metrics: Sequence[str | Metric] | None = None,
        *,
        tbptt_steps: int | None = None,
        rollout_horizon: int | None = None,
    ) -> None:
        super().__init__(loss, metrics)
        self.tbptt_steps = tbptt_steps
        self.rollout_horizon = rollout_horizon

    # -- checks ------------------------------------------------------------------------------

    def check_setup(
        self,
        model: nn.Module,
        infos: Sequence[tuple[str, DataInfo]],
        *,
        teacher_forcing: bool = False,
    ) -> None:
        """Also check feeding back (teacher forcing, rollout) and TBPTT against the data.

        Raises:
            ValueError: A teacher-forcing ratio below 1 or a rollout for a model that cannot
                feed its predictions back, a horizon longer than the validation sequences, or
                targets shorter than the inputs with TBPTT or padding.
        """
        self._check_metrics(model)
        if teacher_forcing or self.rollout_horizon is not None:
            _check_feedback(model)
        for name, info in infos:
            self.check_data(model, info, name)

    def check_data(self, model: nn.Module, info: DataInfo, name: str) -> None:
        """Also check the target size H_y and length L_y against the model and inputs.

        Called for the data set before training and for each batch as it is drawn, so a
        loader's later batch is held to the same rules as the first.

        Raises:
            ValueError: Targets that are not per-step values, or shorter than the inputs with
                TBPTT or padding; for validation with ``rollout_horizon``, padded or too
                short sequences.
            rnnkit.errors.ShapeError: The wrong width, target size or target length.
        """
        super().check_data(model, info, name)
        output_size = getattr(model, "output_size", None)
        if isinstance(output_size, int) and info.target_size != output_size:
            raise ShapeError(
                f"Expected the per-step targets of `{name}` to have shape (N, L, H_y) = (?, ?, "
                f"{output_size}) for the model's output_size = {output_size}, but got "
                f"(?, {info.target_len}, {info.target_size}). Hint: build the model with "
                f"output_size={info.target_size}."
            )
        if info.target_len is not None and info.target_len > info.seq_len:
            raise ShapeError(
                f"Expected the per-step targets of `{name}` to have at most L = {info.seq_len} "
                f"steps (the inputs' length), but got {info.target_len}. Hint: targets align "
                "with the last steps of the output; cut them to the inputs' length."
            )
        self._check_windows(info, name)

    def describe_targets(self) -> str:
        """``"per-step targets (N, L, H_y)"``."""
        return "per-step targets (N, L, H_y)"

    def target_hint(self, info: DataInfo) -> str:
        """Class labels need a classifier."""
        return "use a SequenceClassifier for class labels, or give per-step values (N, L, H_y)"

    def _check_windows(self, info: DataInfo, name: str) -> None:
        short = info.target_len is not None and info.target_len != info.seq_len
        if short and (self.tbptt_steps is not None or not info.full_length):
            raise ValueError(
                f"Expected per-step targets as long as the inputs (L = {info.seq_len}) with "
                f"tbptt_steps or padded sequences, but `{name}` has {info.target_len}-step "
                "targets. Hint: give a target at every step."
            )
        horizon = self.rollout_horizon
        if horizon is None or name == "train":
            return
        if horizon > info.seq_len or short or not info.full_length:
            raise ValueError(
                f"Expected `{name}` to hold unpadded sequences of at least rollout_horizon = "
                f"{horizon} steps with a target at every step, but got {info.layout()} "
                f"(padded: {not info.full_length}). Hint: lower rollout_horizon or pass "
                "equal-length windows, e.g. rnnkit.data.windows(...)."
            )

    # -- per batch ---------------------------------------------------------------------------

    def chunks(self, batch: Batch) -> Iterator[Chunk]:
        """Windows of ``tbptt_steps`` steps (one window without TBPTT); empty ones skipped.

        The windows of a batch share one holder, through which a closed loop (teacher forcing
        below 1) feeds each window's last prediction to the next window.
        """
        x, y, lengths = batch
        steps = int(x.shape[1])
        window = self.tbptt_steps or steps
        longest = steps if lengths is None else int(lengths.max())
        carried = _WindowCarry()
        for start in range(0, longest, window):
            end = min(start + window, steps)
            yield _window(x, y, lengths, start, end)._replace(carried=carried)

    def forward(
        self,
        model: nn.Module,
        chunk: Chunk,
        state: State | None,
        ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State | None]:
        """``model(x, h0, lengths)``, or ``model.rollout(x, ratio, h0)`` when ratio < 1.

        The output is zero at padded steps, and a sequence with no valid step in the window
        keeps its state, so TBPTT windows give what one pass over the batch gives. Below ratio
        1, a window's first step (but the batch's first) takes, by a coin of probability
        ``ratio``, its given input or the previous window's last prediction (detached): the
        windows run the closed loop of one rollout over the whole batch.
        """
        major = time_major(model)
        x = chunk.x.transpose(0, 1) if major else chunk.x
        state = state_as(state, x.dtype)
        if ratio < 1.0:
            regressor = cast(Seq2SeqRegressor, model)
            previous = None if chunk.carried is None else chunk.carried.prediction
            output, new_state = regressor.rollout(
                x, ratio, h0=state, generator=generator, previous=previous
            )
        else:
            output, new_state = model(x, state, chunk.lengths)
        output = output.transpose(0, 1) if major else output
        if ratio < 1.0 and chunk.carried is not None:
            chunk.carried.prediction = output[:, -1].detach()
        return _valid_only(output, state, new_state, chunk.mask)

    def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
        """MSE over the valid steps, or the user's loss (on the valid steps only)."""
        pred, target, mask = self.aligned(output, chunk), chunk.target, chunk.mask
        if self.loss_fn is not None:
            if mask is not None:  # boolean indexing: one host synchronisation on CUDA
                pred, target = pred[mask], target[mask]
            return self.user_loss(pred, target)
        if mask is None:
            return F.mse_loss(pred.float(), target.float())
        squared = (pred.float() - target.float()).square()
        zero = torch.zeros((), dtype=squared.dtype, device=squared.device)
        return torch.where(mask.unsqueeze(-1), squared, zero).sum() / chunk.elements

    def aligned(self, output: Tensor, chunk: Chunk) -> Tensor:
        """The output's last ``L_y`` steps when the targets are shorter (many-to-one)."""
        steps = chunk.target.shape[1]
        return output if steps == output.shape[1] else output[:, -steps:]

    def evaluation_parts(self, model: nn.Module, batch: Batch) -> Parts:
        """The free-running error over ``rollout_horizon`` steps, as ``"rollout_mse"``."""
        horizon = self.rollout_horizon
        if horizon is None or batch.y is None:
            return []
        value = rollout_error(cast(Seq2SeqRegressor, model), batch.x, batch.y, horizon)
        count = float(batch.y.shape[0] * horizon * batch.y.shape[2])
        return [("rollout_mse", value.float() * count, count)]


def _check_feedback(model: nn.Module) -> None:
    spec = getattr(model, "spec", None)
    output_size = getattr(model, "output_size", None)
    if not isinstance(model, Seq2SeqRegressor) or spec is None:
        raise ValueError(
            f"Expected a Seq2SeqRegressor to feed its predictions back (teacher_forcing < 1 "
            f"or rollout_horizon), but the model is a {type(model).__name__}. Hint: keep "
            "teacher_forcing=1.0 and rollout_horizon=None for this model."
        )
    if spec.bidirectional or output_size != spec.input_size:
        raise ValueError(
            f"Expected a unidirectional model with output_size == input_size to feed its "
            f"predictions back (teacher_forcing < 1 or rollout_horizon), but got "
            f"bidirectional={spec.bidirectional}, output_size={output_size}, "
            f"input_size={spec.input_size}. Hint: keep teacher_forcing=1.0 and "
            "rollout_horizon=None for this model."
        )


def _window(x: Tensor, y: Tensor | None, lengths: Tensor | None, start: int, end: int) -> Chunk:
    """Steps ``start..end`` of a batch, with the lengths and mask of that window."""
    width = end - start
    xs = x[:, start:end]
    ys = None if y is None else (y[:, start:end] if y.shape[1] == x.shape[1] else y)
    size = 0 if ys is None else int(ys.shape[1]) * int(ys.shape[2])
    if lengths is None:
        return Chunk(xs, ys, None, None, int(x.shape[0]) * size)
    valid = (lengths - start).clamp(0, width)
    count = 0 if ys is None else int(valid.sum()) * int(ys.shape[2])
    if bool((valid == width).all()):
        return Chunk(xs, ys, None, None, count)
    mask = valid_mask(valid, width, device=x.device)
    return Chunk(xs, ys, valid.clamp(min=1), mask, count)


def _valid_only(
    output: Tensor, state: State | None, new_state: State | None, mask: Tensor | None
) -> tuple[Tensor, State | None]:
    """The output zeroed at padded steps; ``state`` kept where a window holds no valid step.

    A window past a sequence's end still runs it one step (the model needs lengths >= 1).

    Shapes:
        - ``output``: ``(N, l, H_y)``; ``mask``: ``(N, l)``.
    """
    if mask is None:
        return output, new_state
    zero = torch.zeros((), dtype=output.dtype, device=output.device)
    output = torch.where(mask.unsqueeze(-1), output, zero)
    return output, _keep_idle(state, new_state, mask[:, 0])


def _keep_idle(state: State | None, new_state: State | None, active: Tensor) -> State | None:
    """``new_state``, but ``state`` for the sequences not ``active`` in the window.

    Shapes:
        - ``active``: ``(N,)``; states: ``(num_layers, N, H)`` (LSTM: ``(h, c)``).
    """
    if state is None or new_state is None:
        return new_state
    keep = active.view(1, -1, 1)
    if isinstance(new_state, tuple):
        old = cast(tuple[Tensor, Tensor], state)
        return (torch.where(keep, new_state[0], old[0]), torch.where(keep, new_state[1], old[1]))
    return torch.where(keep, new_state, cast(Tensor, state))
