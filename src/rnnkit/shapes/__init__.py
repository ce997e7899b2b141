"""The shape contract of recurrent layers: compute, validate and explain.

A :class:`RecurrentSpec` describes one :class:`torch.nn.RNN`, :class:`torch.nn.LSTM` or
:class:`torch.nn.GRU` layer. It predicts the shape of every tensor going in and out
(:meth:`~RecurrentSpec.expected_shapes`), prints them as a table
(:meth:`~RecurrentSpec.describe`), and checks real tensors before torch sees them
(:meth:`~RecurrentSpec.validate`), raising :class:`~rnnkit.errors.ShapeError` with a message
that names the argument, the expected layout in symbols and numbers, the shape received and,
where the mistake is recognisable, how to fix it.

Notation (as in torch's documentation):

* N = batch size, L = sequence length, D = 2 if bidirectional else 1,
* H_in = ``input_size``, H_cell = ``hidden_size``,
  H_out = ``proj_size`` if ``proj_size > 0`` else ``hidden_size``.

Shapes:
    * ``x``: ``(N, L, H_in)`` with ``batch_first=True``, ``(L, N, H_in)`` without,
      ``(L, H_in)`` unbatched.
    * ``h_0``, ``h_n``: ``(D·num_layers, N, H_out)``, or ``(D·num_layers, H_out)`` unbatched.
    * ``c_0``, ``c_n`` (LSTM): ``(D·num_layers, N, H_cell)``, or ``(D·num_layers, H_cell)``.
    * ``output``: ``(N, L, D·H_out)`` with ``batch_first=True``, ``(L, N, D·H_out)`` without,
      ``(L, D·H_out)`` unbatched.

This layer may import only ``rnnkit.errors`` (and torch); models, data and training
import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

import torch
from torch import Tensor, nn

from rnnkit._validate import check_bool, check_int
from rnnkit.shapes._checks import (
    check_input,
    check_lengths,
    check_state,
    implied_batch,
    input_layout,
    state_layout,
)
from rnnkit.shapes._hints import Layout
from rnnkit.shapes._targets import check_class_targets, check_step_targets, check_tag_targets

__all__ = [
    "CellType",
    "RecurrentSpec",
    "State",
    "describe",
    "validate_class_targets",
    "validate_step_targets",
    "validate_tag_targets",
]

CellType: TypeAlias = Literal["rnn", "lstm", "gru"]
"""The kind of recurrent cell, ``"rnn"`` (Elman, tanh or relu), ``"lstm"`` or ``"gru"``."""

State: TypeAlias = Tensor | tuple[Tensor, Tensor]
"""The state of a recurrent layer, ``h`` for an RNN or GRU and the pair ``(h, c)`` for an LSTM."""

_CELLS: tuple[str, ...] = get_args(CellType)
_MODES: dict[str, CellType] = {"RNN_TANH": "rnn", "RNN_RELU": "rnn", "LSTM": "lstm", "GRU": "gru"}


@dataclass(frozen=True)
class RecurrentSpec:
    """The shape contract of one recurrent layer (stacked and bidirectional included).

    Args:
        cell: The recurrent cell, ``"rnn"``, ``"lstm"`` or ``"gru"``.
        input_size: H_in, the number of features per time step.
        hidden_size: The hidden size; H_cell for an LSTM, and H_out unless ``proj_size > 0``.
        num_layers: How many layers are stacked.
        bidirectional: Whether each layer also reads the sequence backwards (D = 2).
        batch_first: Whether ``x`` and ``output`` put the batch first, ``(N, L, ...)``.
            rnnkit's default is ``True`` (torch's is ``False``); the states ``h_0``/``c_0``
            are ``(D·num_layers, N, ...)`` either way.
        proj_size: LSTM only: when positive, ``h`` is projected to H_out = ``proj_size``
            (which must be smaller than ``hidden_size``); ``c`` keeps ``hidden_size``.

    Raises:
        TypeError: An argument has the wrong type (for example a float ``hidden_size``).
        ValueError: An argument is out of range, or ``proj_size`` is set for a non-LSTM.

    Example:
        >>> spec = RecurrentSpec("rnn", input_size=28, hidden_size=128)
        >>> spec.expected_shapes(128, 28)["output"]
        (128, 28, 128)
    """

    cell: CellType
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = True
    proj_size: int = 0

    def __post_init__(self) -> None:
        if self.cell not in _CELLS:
            raise ValueError(
                f"Expected `cell` to be one of {', '.join(map(repr, _CELLS))}, but got "
                f"{self.cell!r}. Hint: {_cell_hint(self.cell)}"
            )
        for name, minimum in (("input_size", 1), ("hidden_size", 1), ("num_layers", 1)):
            check_int(name, getattr(self, name), minimum)
        check_int("proj_size", self.proj_size, 0)
        check_bool("bidirectional", self.bidirectional)
        check_bool("batch_first", self.batch_first)
        _check_proj(self.cell, self.proj_size, self.hidden_size)

    @property
    def D(self) -> int:
        """The number of directions D, 2 for a bidirectional layer and 1 otherwise."""
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """The size H_out of ``h``, ``proj_size`` when positive and else ``hidden_size``."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @classmethod
    def from_module(cls, module: nn.Module) -> RecurrentSpec:
        """The spec of a torch recurrent layer, or of a module exposing a ``spec`` attribute.

        Args:
            module: A :class:`torch.nn.RNN`, :class:`torch.nn.LSTM` or :class:`torch.nn.GRU`
                (any :class:`torch.nn.RNNBase`), or an rnnkit model with a ``spec``.

        Returns:
            The spec with the layer's sizes, ``bidirectional`` and ``batch_first``.

        Raises:
            TypeError: `module` is not a recurrent layer and has no ``spec``.
        """
        spec = getattr(module, "spec", None)
        if isinstance(spec, RecurrentSpec):
            return spec
        if not isinstance(module, nn.RNNBase) or module.mode not in _MODES:
            kind = type(module).__name__
            raise TypeError(f"`module` must be an nn.RNN, nn.LSTM or nn.GRU, got {kind}")
        return cls(
            cell=_MODES[module.mode],
            input_size=module.input_size,
            hidden_size=module.hidden_size,
            num_layers=module.num_layers,
            bidirectional=module.bidirectional,
            batch_first=module.batch_first,
            proj_size=module.proj_size,
        )

    def expected_shapes(self, N: int | None, L: int) -> dict[str, tuple[int, ...]]:
        """The shape of every tensor going in and out of the layer.

        Args:
            N: The batch size, or ``None`` for an unbatched input.
            L: The sequence length.

        Returns:
            A dict with keys ``"x"``, ``"h_0"``, ``"output"``, ``"h_n"``, plus ``"c_0"`` and
            ``"c_n"`` for an LSTM, in that order.

        Raises:
            ValueError: `N` or `L` is smaller than 1.

        Shapes:
            See the module's notation: ``x`` is ``(N, L, H_in)`` (batch first),
            ``h_0`` is ``(D·num_layers, N, H_out)``, ``output`` is ``(N, L, D·H_out)``.
        """
        return {key: layout.shape() for key, layout in self._layouts(N, L).items()}

    def describe(self, N: int | None, L: int) -> str:
        """A table of each tensor's layout in symbols and in numbers.

        Args:
            N: The batch size, or ``None`` for an unbatched input.
            L: The sequence length.

        Returns:
            A multi-line string with the spec, the values of the symbols, one line per
            tensor such as ``output  (N, L, D·H_out) = (128, 28, 256)``, and the slice of
            ``output`` that holds each direction's final state.
        """
        layouts = self._layouts(N, L)
        rows = [f"{key:<8}{layout}" for key, layout in layouts.items()]
        return "\n".join([repr(self), self._symbols(N, L), *rows, *self._final_state_notes(N)])

    def validate_input(
        self,
        x: Tensor,
        *,
        name: str = "x",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> bool:
        """Check the input sequence batch `x`.

        Accepts everything torch accepts: batched or unbatched, contiguous or not.

        Args:
            x: The input.
            name: The argument's name in error messages.
            dtype: The layer's dtype; when ``None`` any floating-point dtype passes.
            device: The layer's device; when ``None`` any device passes.

        Returns:
            ``True`` when `x` is batched (3-D), ``False`` when unbatched (2-D).

        Raises:
            ShapeError: `x` has the wrong shape, is empty, or has the wrong dtype or device.

        Shapes:
            x: ``(N, L, H_in)`` if ``batch_first`` else ``(L, N, H_in)``; ``(L, H_in)``
            unbatched.
        """
        return check_input(self, x, name, dtype, device)

    def validate_state(
        self,
        state: State | None,
        x: Tensor,
        *,
        name: str = "h_0",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        """Check an initial state against the input `x`.

        Args:
            state: ``h_0`` (RNN, GRU), the pair ``(h_0, c_0)`` (LSTM), or ``None``.
            x: The input the state goes with (checked first).
            name: The argument's name in error messages.
            dtype: The layer's dtype; when ``None`` the state must match `x`'s dtype.
            device: The layer's device; when ``None`` the state must be on `x`'s device.

        Raises:
            ShapeError: The state is not the right kind (tensor or pair) or has the wrong
                shape, dtype or device; or it is a strided view on a CUDA device, which
                cuDNN rejects (a contiguous copy is needed there, not on the CPU); or `x` is
                invalid.

        Shapes:
            h_0: ``(D·num_layers, N, H_out)``, unbatched ``(D·num_layers, H_out)``.
            c_0: ``(D·num_layers, N, H_cell)``, unbatched ``(D·num_layers, H_cell)``.
        """
        check_input(self, x, "x", None, None)
        check_state(self, state, x, name, dtype, device)

    def validate_lengths(self, lengths: Tensor | None, x: Tensor, *, name: str = "lengths") -> None:
        """Check the lengths of the sequences of a padded batch `x`.

        Any integer dtype passes (:func:`torch.nn.utils.rnn.pack_padded_sequence` converts
        to int64); lengths must be on the CPU, one per sequence, each in ``1..L``.

        Args:
            lengths: The number of real (unpadded) steps of each sequence, or ``None``.
            x: The padded batch (checked first); it must be batched.
            name: The argument's name in error messages.

        Raises:
            ShapeError: The lengths have the wrong dtype, device, shape or values, or `x`
                is unbatched or invalid.

        Shapes:
            lengths: ``(N,)``.
        """
        check_input(self, x, "x", None, None)
        check_lengths(self, lengths, x, name)

    def validate(
        self,
        x: Tensor,
        state: State | None = None,
        lengths: Tensor | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        state_name: str = "h_0",
    ) -> bool:
        """Check a whole call: the input, the initial state and the lengths together.

        Checking them together finds more: when ``h_0`` or ``lengths`` reveal N, an `x`
        whose batch and time dimensions are swapped is reported as such. With `lengths`, a
        non-contiguous state on a CUDA device passes: packing with
        ``pack_padded_sequence(..., enforce_sorted=False)``, as rnnkit's models do, hands
        cuDNN a reordered, contiguous copy.

        Args:
            x: The input.
            state: ``h_0``, ``(h_0, c_0)`` for an LSTM, or ``None``.
            lengths: The lengths of the sequences of a padded batch, or ``None``.
            dtype: The layer's dtype (see :meth:`validate_input`).
            device: The layer's device (see :meth:`validate_input`).
            state_name: What the caller calls the state (error messages name it), e.g.
                ``"state"`` for :meth:`rnnkit.models.RecurrentModel.step`.

        Returns:
            ``True`` when `x` is batched, ``False`` when unbatched.

        Raises:
            ShapeError: On the first argument that breaks the contract.

        Shapes:
            x: ``(N, L, H_in)`` (batch first), ``(L, N, H_in)`` or ``(L, H_in)``.
            h_0: ``(D·num_layers, N, H_out)``; c_0: ``(D·num_layers, N, H_cell)``.
            lengths: ``(N,)``.
        """
        batched = check_input(self, x, "x", dtype, device, implied_batch(self, state, lengths))
        check_state(self, state, x, state_name, dtype, device, packed=lengths is not None)
        check_lengths(self, lengths, x, "lengths")
        return batched

    def _layouts(self, n: int | None, steps: int) -> dict[str, Layout]:
        check_int("L", steps, 1)
        if n is not None:
            check_int("N", n, 1)
        layouts = {"x": input_layout(self, n is not None, n, steps)}
        layouts["h_0"] = state_layout(self, "h", n)
        if self.cell == "lstm":
            layouts["c_0"] = state_layout(self, "c", n)
        layouts["output"] = self._output_layout(layouts["x"])
        layouts["h_n"] = layouts["h_0"]
        if self.cell == "lstm":
            layouts["c_n"] = layouts["c_0"]
        return layouts

    def _output_layout(self, x: Layout) -> Layout:
        symbols = (*x.symbols[:-1], "D·H_out")
        return Layout(symbols, (*x.sizes[:-1], self.D * self.output_size))

    def _symbols(self, n: int | None, steps: int) -> str:
        batch = "N: none (unbatched)" if n is None else f"N = {n}"
        line = (
            f"{batch}, L = {steps}, D = {self.D}, num_layers = {self.num_layers}, "
            f"H_in = {self.input_size}, H_out = {self.output_size}"
        )
        return line + (f", H_cell = {self.hidden_size}" if self.cell == "lstm" else "")

    def _final_state_notes(self, n: int | None) -> list[str]:
        step = _step_slice(self.batch_first, batched=n is not None)
        if self.D == 1:
            return [
                f"output{step('-1', ':')} == h_n[-1]: the top layer's state after the last step."
            ]
        half = self.output_size
        return [
            f"output{step('-1', f':{half}')} == h_n[-2]: the top layer's forward state at the end.",
            f"output{step('0', f'{half}:')} == h_n[-1]: its backward state, which ends at step 0.",
        ]


def _step_slice(batch_first: bool, *, batched: bool) -> Callable[[str, str], str]:
    def slicer(step: str, features: str) -> str:
        if not batched:
            return f"[{step}, {features}]"
        return f"[:, {step}, {features}]" if batch_first else f"[{step}, :, {features}]"

    return slicer


def describe(layer: nn.Module | RecurrentSpec, N: int | None, L: int) -> str:
    """The shape table of a layer or spec; see :meth:`RecurrentSpec.describe`.

    Args:
        layer: A :class:`RecurrentSpec`, a torch recurrent layer, or an rnnkit model.
        N: The batch size, or ``None`` for an unbatched input.
        L: The sequence length.

    Returns:
        The table, one line per tensor.
    """
    spec = layer if isinstance(layer, RecurrentSpec) else RecurrentSpec.from_module(layer)
    return spec.describe(N, L)


def validate_class_targets(
    y: Tensor, *, batch_size: int | None, num_classes: int | None, name: str = "y"
) -> None:
    """Check class-index targets for a many-to-one classifier before the loss sees them.

    ``torch.nn.functional.cross_entropy`` takes int64 (or uint8) indices, one per
    sequence; other integer dtypes, floats and one-hot rows are rejected with a hint.

    Args:
        y: The targets.
        batch_size: N, the number of sequences in the batch; ``None`` for an unbatched
            prediction, whose target is a single 0-d index.
        num_classes: C; when ``None`` only negative indices are rejected.
        name: The argument's name in error messages.

    Raises:
        ShapeError: `y` has the wrong dtype or shape, or an index outside ``0..C-1``.

    Shapes:
        y: ``(N,)``, or ``()`` unbatched, with values in ``0..C-1``.
    """
    check_class_targets(y, batch_size, num_classes, name)


def validate_step_targets(
    y: Tensor, *, batch_size: int | None, seq_len: int, size: int, name: str = "y"
) -> None:
    """Check per-step regression targets (many-to-many) before the loss sees them.

    Targets are batch first whatever the layer's ``batch_first``. Any real dtype passes
    (the loss promotes integers and booleans); complex targets do not. A missing trailing
    feature dimension is rejected because ``torch.nn.functional.mse_loss`` would
    broadcast ``(N, L)`` against ``(N, L, 1)`` predictions into a wrong loss.

    Args:
        y: The targets.
        batch_size: N; ``None`` for an unbatched sequence.
        seq_len: L, the number of steps.
        size: H_y, the number of values per step.
        name: The argument's name in error messages.

    Raises:
        ShapeError: `y` is complex, or does not have the expected shape.

    Shapes:
        y: ``(N, L, H_y)``, or ``(L, H_y)`` unbatched.
    """
    check_step_targets(y, batch_size, seq_len, size, name)


def validate_tag_targets(
    y: Tensor,
    *,
    batch_size: int | None,
    seq_len: int,
    num_classes: int | None,
    name: str = "y",
) -> None:
    """Check per-step class targets for a sequence tagger before the loss sees them.

    Targets are batch first whatever the layer's ``batch_first``: one int64 (or uint8) class
    index per step, or -100 (``torch.nn.functional.cross_entropy``'s ``ignore_index``) at
    steps the loss and accuracy skip. Floats, one-hot rows per step and a trailing
    singleton dimension are rejected with a hint.

    Args:
        y: The targets.
        batch_size: N; ``None`` for an unbatched sequence.
        seq_len: L, the number of steps.
        num_classes: C; when ``None`` only negative indices (other than -100) are rejected.
        name: The argument's name in error messages.

    Raises:
        ShapeError: `y` has the wrong dtype or shape, or an index outside ``0..C-1``.

    Shapes:
        y: ``(N, L)``, or ``(L,)`` unbatched, with values in ``0..C-1`` or -100.
    """
    check_tag_targets(y, batch_size, seq_len, num_classes, name)


def _cell_hint(cell: object) -> str:
    if isinstance(cell, str) and cell.lower() in _CELLS:
        return f"the names are lower case: cell={cell.lower()!r}."
    return "these are the recurrent cells rnnkit builds (torch's RNN, LSTM and GRU)."


def _check_proj(cell: str, proj_size: int, hidden_size: int) -> None:
    if proj_size and cell != "lstm":
        raise ValueError(
            f"Expected proj_size = 0 for cell={cell!r}, but got proj_size={proj_size}. Hint: "
            "projections are for LSTMs only."
        )
    if proj_size >= hidden_size:
        raise ValueError(
            f"Expected `proj_size` < hidden_size = {hidden_size}, but got {proj_size}. Hint: "
            "the projection maps the hidden state to a smaller one."
        )
