"""Stateful training: the recurrent state carried from one stream batch into the next.

With ``Trainer(stateful=True)`` the data are a :class:`~rnnkit.data.StreamBatches` (built by
:func:`rnnkit.data.streams`), whose row i of consecutive batches continues stream i. A
:class:`StreamCarry` follows that contract: it hands each batch the state the previous batch
ended with (detached: truncated back-propagation through time), restarts from zeros the rows
its reset flags mark, and keeps the final state for the next batch. The training carry is part
of the Trainer's ``state_dict`` (``"stream_state"``), so a resumed run continues exactly;
evaluation and prediction on streams carry the state the same way, with a carry of their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rnnkit.data import Batch, StreamBatches
from rnnkit.errors import CheckpointError
from rnnkit.shapes import State
from rnnkit.tasks import RegressionTask, Task, detach_state
from rnnkit.training._batches import BatchSource, IterableSource

if TYPE_CHECKING:
    from rnnkit.training.trainer import Trainer

__all__ = [
    "StreamCarry",
    "check_carry_resumable",
    "check_one_direction",
    "check_stateful",
    "fit_carry",
    "join_stream_predictions",
    "predict_stream_batch",
    "state_entry",
    "stream_of",
    "streaming",
]


class StreamCarry:
    """The state carried along the rows of a :class:`~rnnkit.data.StreamBatches`.

    Args:
        resets: The streams' reset flags; row j says which rows of batch j start afresh.

    Shapes:
        - ``resets``: ``(num_batches, N)``.
        - the state: ``(D·num_layers, N, H_out)`` (and the cell state for an LSTM).
    """

    def __init__(self, resets: Tensor) -> None:
        self.resets = resets
        self.state: State | None = None
        self.count = 0

    def begin(self, index: int) -> State | None:
        """The initial state of batch ``index``: the carried one, zeroed where rows reset."""
        reset = self.resets[index]
        if self.state is None or bool(reset.all()):
            return None
        keep = ~reset.to(_device(self.state))

        def masked(t: Tensor) -> Tensor:
            return torch.where(keep.view(1, -1, 1), t, torch.zeros((), dtype=t.dtype))

        return _map(self.state, masked)

    def end(self, state: State | None) -> None:
        """Keep the final state of a batch (detached) for the next one."""
        self.state = detach_state(state)
        self.count += 1

    def state_dict(self) -> dict[str, Any]:
        """The carried state, on the CPU (``None`` before the first batch)."""
        return {"state": _map(self.state, lambda t: t.detach().cpu().clone())}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        """Restore a :meth:`state_dict` onto ``device``."""
        self.state = _map(state["state"], lambda t: t.to(device))


def _map(state: Any, fn: Callable[[Tensor], Tensor]) -> State | None:
    """``fn`` applied to ``h`` (and ``c``); a saved ``[h, c]`` list comes back a tuple."""
    if state is None:
        return None
    if isinstance(state, tuple | list):
        return (fn(state[0]), fn(state[1]))
    return fn(state)


def _device(state: State) -> torch.device:
    return (state[0] if isinstance(state, tuple) else state).device


def stream_of(source: BatchSource | None) -> StreamBatches | None:
    """The :class:`~rnnkit.data.StreamBatches` behind ``source``, or ``None``."""
    if isinstance(source, IterableSource) and isinstance(source.iterable, StreamBatches):
        return source.iterable
    return None


def check_stateful(trainer: Trainer, task: Task, model: nn.Module, train: Any, val: Any) -> None:
    """Raise, before any training, for a stateful set-up that cannot carry state.

    Raises:
        ValueError: Data that are not streams, a task that takes no initial state, a
            bidirectional model, or DDP.
    """
    for name, data in (("train", train), ("val", val)):
        if data is not None and not isinstance(data, StreamBatches):
            raise ValueError(
                f"Expected `{name}` to be a stream source with stateful=True (the batches of "
                f"rnnkit.data.streams(...), whose rows continue across batches), but got "
                f"{type(data).__name__}. Hint: build it with rnnkit.data.streams(series, "
                "num_streams, window); shuffled or independent sequences have no state to "
                "carry, so train them with stateful=False."
            )
    if not isinstance(task, RegressionTask) and not getattr(task, "takes_state", False):
        raise ValueError(
            f"Expected a model whose forward takes an initial state with stateful=True (a "
            f"Seq2SeqRegressor), but the task is a {type(task).__name__}. Hint: use a "
            "Seq2SeqRegressor, or a task with takes_state = True whose forward uses `state`."
        )
    check_one_direction(model)
    if trainer.distributed.is_distributed:
        raise ValueError(
            "Expected one process with stateful=True, but the Trainer runs under DDP. Hint: "
            "train streams in one process (the streams cannot be split without cutting them)."
        )


def check_one_direction(model: nn.Module) -> None:
    """Refuse a bidirectional model for carrying state across stream batches.

    Raises:
        ValueError: The model is bidirectional.
    """
    spec = getattr(model, "spec", None)
    if getattr(spec, "bidirectional", False):
        raise ValueError(
            "Expected a unidirectional model with stateful=True, but this one is "
            "bidirectional: its backward direction ends at a window's first step, so its final "
            "state belongs to the start of the window, not to the next one. Hint: use "
            "bidirectional=False, or train without stateful=True."
        )


def check_carry_resumable(pending: Mapping[str, Any], stateful: bool) -> None:
    """Refuse a mid-epoch resume whose carried state and ``stateful`` setting disagree.

    Called before the checkpoint's states are loaded, so a refusal changes nothing.

    Raises:
        rnnkit.errors.CheckpointError: The checkpoint stops mid-epoch with a carried state
            and the Trainer has ``stateful=False``, or without one and ``stateful=True``.
    """
    if int(pending["position"]) == 0 or (pending.get("stream_state") is not None) == stateful:
        return
    if stateful:
        raise CheckpointError(
            "Expected the checkpoint of a stateful run to hold the carried state "
            "('stream_state'), but it has none and stops mid-epoch. Hint: resume it with "
            "the Trainer it was saved with (stateful=False), or start the epoch afresh."
        )
    raise CheckpointError(
        "Expected stateful=True to resume this checkpoint: it stops mid-epoch in a stateful "
        "run, with the state carried across its stream batches, which stateful=False would "
        "drop. Hint: resume with Trainer(..., stateful=True) as the run was saved."
    )


def fit_carry(trainer: Trainer, pending: Mapping[str, Any] | None) -> StreamCarry | None:
    """The training carry of a stateful fit, restored from a resumed state if any."""
    stream = stream_of(trainer.train_source)
    if not trainer.options.stateful or stream is None:
        return None
    carry = StreamCarry(stream.resets)
    if pending is None:
        return carry
    saved = pending.get("stream_state")  # its presence mid-epoch: check_carry_resumable
    if saved is not None:
        carry.load_state_dict(saved, trainer.device)
    return carry


def state_entry(carry: StreamCarry | None) -> dict[str, Any]:
    """The Trainer state's ``"stream_state"`` entry (none without a carry)."""
    return {} if carry is None else {"stream_state": carry.state_dict()}


@contextlib.contextmanager
def streaming(trainer: Trainer, source: BatchSource) -> Iterator[None]:
    """Carry the state over ``source`` in evaluation and prediction, if it is a stream."""
    stream = stream_of(source)
    carry = StreamCarry(stream.resets) if trainer.options.stateful and stream is not None else None
    if carry is not None:
        check_one_direction(trainer.evaluated[0])
    outer, trainer.eval_carry = trainer.eval_carry, carry
    try:
        yield
    finally:
        trainer.eval_carry = outer


def predict_stream_batch(task: Task, model: nn.Module, batch: Batch, carry: StreamCarry) -> Tensor:
    """:meth:`~rnnkit.tasks.Task.predict` for one batch, starting from the carried state."""
    state = carry.begin(carry.count)
    pieces = []
    for chunk in task.chunks(batch):
        output, state = task.forward(model, chunk, state)
        pieces.append(output.float().cpu())
    carry.end(state)
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)


def join_stream_predictions(outputs: list[Tensor]) -> Tensor:
    """The batches' outputs laid along the streams, like :attr:`StreamBatches.y`.

    Shapes:
        - ``outputs[j]``: ``(N, L, H_y)``; return: ``(N, num_batches·L, H_y)``.
    """
    return torch.cat(outputs, dim=1)
