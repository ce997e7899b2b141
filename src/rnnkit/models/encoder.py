"""The recurrent encoder every rnnkit model stands on.

:class:`RecurrentEncoder` wraps torch's own :class:`torch.nn.RNN`, :class:`torch.nn.LSTM` or
:class:`torch.nn.GRU` (so the fused cuDNN / oneDNN kernels run; on the CPU, training runs
through rnnkit's own kernel where it applies, below), validates every call through the shape
contract (:class:`rnnkit.shapes.RecurrentSpec`) and handles what a hand-written loop does by
hand: the zero initial state on the input's device and dtype, and variable-length batches.

Variable-length batches take the cheapest exact path:

* every length equal (to ``L`` or to a shorter ``l``): no packing, the batch runs padded (cut
  to ``l`` steps and zero-padded back to ``L``);
* a unidirectional layer whose caller needs only the top layer's outputs (a classifier's
  readout, or a one-layer RNN/GRU whose final state is its last valid output): the batch runs
  padded and each sequence's last valid step is gathered; right padding comes after every
  valid step, so it cannot change them;
* otherwise: :func:`torch.nn.utils.rnn.pack_padded_sequence` (``enforce_sorted=False``, the
  lengths kept on the CPU) and :func:`torch.nn.utils.rnn.pad_packed_sequence`.

In every case the output is zero at padded positions and the final state is each sequence's
state at its own last valid step (for a backward direction: at step 0).

A plain RNN (``cell="rnn"``) trains on the CPU through rnnkit's own kernel (``kernel="auto"``,
the default): one autograd node per layer and direction instead of torch's four per step, and
each weight's gradient as one product over all steps (its speed against torch's layer is on the
docs' benchmarks page). It runs only where it can stand in for torch's
layer: autograd recording, float32/float64 CPU tensors of at least 4 steps, not packed, no
autocast, no dropout between layers in training mode, no hook on the wrapped layer (or global
module hook), no ``torch.func`` transform, forward-mode AD or ``torch.jit`` tracing; everything
else runs torch's own layer. Results agree with torch's to float rounding, not bitwise. It
gives no second derivative, and the output :meth:`rnnkit.RecurrentEncoder.run` returns for a
unidirectional layer is the buffer saved for the backward pass
(:meth:`rnnkit.RecurrentEncoder.forward` returns a copy). ``kernel="torch"`` always runs
torch's layer.

GRU and LSTM layers (without ``proj_size``) have rnnkit kernels of the same design, under the
same conditions, with each step's elementwise work compiled on first use (where a C++
compiler is available; elsewhere they run it as torch operations, with the same results):
``kernel="rnnkit"`` runs them (on any number of steps, with or without autograd) and raises
:class:`~rnnkit.errors.KernelUnavailableError`, naming the reason, where a call cannot run
through a kernel (a hook, autocast, a packed batch, another device, ...); ``kernel="auto"``
runs a kernel for the cells in :data:`AUTO_CELLS` (a GRU or LSTM only with its compiled
step).
"""

from __future__ import annotations

from typing import Any, Literal, cast, get_args

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.data import valid_mask
from rnnkit.errors import KernelUnavailableError
from rnnkit.models._encoder_kernels import APPLIES, REFUSALS, run_kernel, shares_saved_states
from rnnkit.models._paths import extent, gather_last, pad_steps
from rnnkit.models.initializers import InitScheme, check_init, init_recurrent_
from rnnkit.shapes import CellType, RecurrentSpec, State

__all__ = [
    "AUTO_CELLS",
    "KERNELS",
    "NONLINEARITIES",
    "Kernel",
    "Nonlinearity",
    "RecurrentEncoder",
    "batch_state",
    "gather_last",
    "shape_summary",
    "unbatch_state",
    "valid_mask",
]

Nonlinearity = Literal["tanh", "relu"]
"""The activation :math:`f` of a plain RNN cell."""

NONLINEARITIES: tuple[str, ...] = get_args(Nonlinearity)
"""Every accepted ``nonlinearity=`` name."""

Kernel = Literal["auto", "torch", "rnnkit"]
"""Which code runs the layers, ``"auto"`` (rnnkit's CPU training kernel where it applies and
is the faster, torch's layer elsewhere), ``"torch"`` (always torch's layer) or ``"rnnkit"``
(always rnnkit's kernel, or :class:`~rnnkit.errors.KernelUnavailableError` naming why not)."""

AUTO_CELLS: tuple[str, ...] = ("rnn", "gru", "lstm")
"""The cells ``kernel="auto"`` runs through rnnkit's kernel (where it applies). A GRU or LSTM
needs the kernel's compiled step too (built on first use; without a C++ compiler their layers
run torch's layer, which is then the faster)."""

KERNELS: tuple[str, ...] = get_args(Kernel)
"""Every accepted ``kernel=`` name."""


class RecurrentEncoder(nn.Module):
    """A stack of recurrent layers: torch's RNN, LSTM or GRU, validated and length-aware.

    For ``cell="rnn"`` each direction of each layer computes the recurrence
    :math:`H_t = f(U X_t + W H_{t-1} + b)` with :math:`H_0 = 0` unless ``h0`` is given; a
    bidirectional layer also runs :math:`H'_t = f(U' X_t + W' H'_{t+1} + b')` from the last
    step backwards and concatenates :math:`[H_t, H'_t]` at every step.

    Args:
        input_size: Features per step, H_in.
        hidden_size: State size H_cell (and H_out unless ``proj_size`` > 0).
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        num_layers: Stacked layers; each feeds its outputs to the next.
        bidirectional: Also run every layer backwards in time (D = 2).
        dropout: Dropout on the outputs of every layer but the last (needs ``num_layers`` > 1).
        proj_size: LSTM only: project the state to this size (then H_out = ``proj_size``).
        nonlinearity: ``"tanh"`` or ``"relu"``, for ``cell="rnn"`` only.
        batch_first: Inputs and outputs laid out ``(N, L, ·)`` (rnnkit's default, as most
            tutorials write them) rather than torch's default ``(L, N, ·)``. The wrapped
            torch layer itself always runs batch-first; the encoder transposes views, never copies.
        init: ``"default"``, ``"orthogonal"`` or ``"identity"``; see
            :mod:`rnnkit.models.initializers`.
        kernel: ``"auto"`` (default): RNN, GRU and LSTM layers train on the CPU through
            rnnkit's kernel (GRU and LSTM where its compiled step is available; see above);
            ``"torch"``: always torch's layer; ``"rnnkit"``: always rnnkit's kernel, raising
            :class:`~rnnkit.errors.KernelUnavailableError` where it cannot run. It changes no
            parameter, so it is not part of a model's config; set :attr:`kernel` on a built
            encoder to switch.

    Raises:
        ValueError: An option is out of range or does not apply to this cell.
        TypeError: An option has the wrong type.

    Attributes:
        spec: The shape contract of this layer stack (with the user-facing ``batch_first``).
        rnn: The wrapped :class:`torch.nn.RNN`, :class:`torch.nn.LSTM` or :class:`torch.nn.GRU`.
        kernel: ``"auto"``, ``"torch"`` or ``"rnnkit"``, as given.
    """

    spec: RecurrentSpec
    rnn: nn.RNNBase
    kernel: Kernel = "auto"  # also for encoders pickled before the option existed

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        cell: CellType = "rnn",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        proj_size: int = 0,
        nonlinearity: Nonlinearity = "tanh",
        batch_first: bool = True,
        init: InitScheme = "default",
        kernel: Kernel = "auto",
    ) -> None:
        super().__init__()
        self.spec = RecurrentSpec(
            cell=cell,
            input_size=input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            batch_first=batch_first,
            proj_size=proj_size,
        )
        _check_dropout(dropout, num_layers)
        _check_nonlinearity(nonlinearity, cell)
        check_init(init, cell=cell, nonlinearity=nonlinearity)
        _check_kernel(kernel)
        self.kernel = kernel
        self.dropout = float(dropout)
        self.nonlinearity: Nonlinearity = nonlinearity
        self.init: InitScheme = init
        self.rnn = _build_layer(self.spec, self.dropout, nonlinearity)
        if init != "default":
            init_recurrent_(self.rnn, init)

    @property
    def batch_first(self) -> bool:
        """Whether inputs and outputs are laid out ``(N, L, ·)``."""
        return self.spec.batch_first

    def forward(
        self, x: Tensor, h0: State | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """Run the layers over a batch; return every step's output and the final state.

        Args:
            x: The input sequences.
            h0: The initial state, ``h_0`` (or ``(h_0, c_0)`` for an LSTM); zeros on ``x``'s
                device and dtype when omitted.
            lengths: Each sequence's valid length (int64, on the CPU, each in ``1..L``) for a
                right-padded batch; ``None`` when every sequence has all ``L`` steps.

        Returns:
            ``(output, h_n)``, or ``(output, (h_n, c_n))`` for an LSTM. ``output`` is zero at
            padded positions; ``h_n`` holds each sequence's state at its last valid step.

        Shapes:
            - ``x``: ``(N, L, H_in)`` (``(L, N, H_in)`` if not ``batch_first``; ``(L, H_in)``
              unbatched).
            - ``h0``, ``h_n``: ``(D·num_layers, N, H_out)`` (``(D·num_layers, H_out)``
              unbatched); ``c_0``, ``c_n``: ``(D·num_layers, N, H_cell)``.
            - ``lengths``: ``(N,)``.
            - ``output``: ``(N, L, D·H_out)`` (``(L, N, D·H_out)`` if not ``batch_first``;
              ``(L, D·H_out)`` unbatched).

        Raises:
            rnnkit.errors.ShapeError: ``x``, ``h0`` or ``lengths`` break the shape contract.
        """
        batched = self.validate(x, h0, lengths)
        xb, hb, lb = self.to_batch_major(x, h0, lengths, batched)
        output, state = self.run(xb, hb, lb)
        if shares_saved_states(output):
            output = output.clone()  # the user may modify it in place, as torch's allows
        return self.output_from_batch_major(output, batched), unbatch_state(state, batched)

    def validate(
        self,
        x: Tensor,
        h0: State | None = None,
        lengths: Tensor | None = None,
        *,
        name: str = "x",
        state_name: str = "h_0",
    ) -> bool:
        """Check a call's tensors against :attr:`spec` and this layer's dtype and device.

        Args:
            x: The input sequences, in the user's layout.
            h0: The initial state, or ``None``.
            lengths: The valid lengths, or ``None``.
            name: What the caller calls ``x`` (error messages name it).
            state_name: What the caller calls ``h0`` (error messages name it).

        Returns:
            ``True`` when ``x`` is batched, ``False`` for a single ``(L, H_in)`` sequence.

        Raises:
            rnnkit.errors.ShapeError: A tensor breaks the contract.
        """
        # an attribute, not next(parameters()): torch.compile traces it without a break
        weight = cast(Tensor, self.rnn.weight_ih_l0)
        if name != "x":
            self.spec.validate_input(x, name=name, dtype=weight.dtype, device=weight.device)
        return self.spec.validate(
            x, h0, lengths, dtype=weight.dtype, device=weight.device, state_name=state_name
        )

    def to_batch_major(
        self, x: Tensor, h0: State | None, lengths: Tensor | None, batched: bool
    ) -> tuple[Tensor, State | None, Tensor | None]:
        """Bring validated inputs to the batched, batch-first layout :meth:`run` works in.

        Args:
            x: The input sequences, in the user's layout.
            h0: The initial state, or ``None``.
            lengths: The valid lengths, or ``None``.
            batched: What :meth:`validate` returned.

        Returns:
            ``(x, h0, lengths)`` as views: ``x`` ``(N, L, H_in)``, ``h0``
            ``(D·num_layers, N, H_out)``, ``lengths`` ``(N,)``.
        """
        if not batched:  # the contract allows no lengths with an unbatched x
            x = x.unsqueeze(0)
        elif not self.batch_first:
            x = x.transpose(0, 1)
        return x, batch_state(h0, batched), lengths

    def output_from_batch_major(self, output: Tensor, batched: bool) -> Tensor:
        """Return a batch-first, batched per-step tensor in the user's layout.

        Args:
            output: Any per-step tensor in the internal layout.
            batched: Whether the user's input was batched.

        Returns:
            A view of ``output`` in the user's layout.

        Shapes:
            - ``output``: ``(N, L, F)``.
            - return: ``(N, L, F)``, ``(L, N, F)`` if not ``batch_first``, ``(L, F)``
              unbatched.
        """
        if not batched:
            return output.squeeze(0)
        return output if self.batch_first else output.transpose(0, 1)

    def run(
        self, x: Tensor, h0: State | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """Run on validated, batch-first, batched tensors (see :meth:`to_batch_major`).

        Args:
            x: The input sequences.
            h0: The initial state, or ``None`` for zeros.
            lengths: The valid lengths, or ``None``.

        Returns:
            ``(output, state)`` as :meth:`forward` returns them, batch-first. Through rnnkit's
            kernel a unidirectional layer's ``output`` is the buffer saved for the backward
            pass: modify a copy, not it (autograd refuses in-place changes to it; :meth:`forward`
            returns a copy).

        Shapes:
            - ``x``: ``(N, L, H_in)``; ``lengths``: ``(N,)``.
            - ``output``: ``(N, L, D·H_out)``; ``state``: ``(D·num_layers, N, H_out)``.
        """
        if lengths is None:
            return self._call(x, h0)
        shortest, longest = extent(lengths, x.shape[1])
        if shortest == longest:
            output, state = self._call(x[:, :longest], h0)
            return pad_steps(output, x.shape[1]), state
        if self._state_is_last_output():
            output = self._run_padded(x, h0, lengths, longest)
            return output, gather_last(output, lengths).unsqueeze(0)
        return self._run_packed(x, h0, lengths)

    def run_outputs(
        self, x: Tensor, h0: State | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """Like :meth:`run`, but return only the top layer's outputs, by the fastest path.

        A unidirectional stack runs padded here, never packed: right padding cannot change
        the steps before it, and the padded positions are zeroed afterwards.

        Args:
            x: The input sequences.
            h0: The initial state, or ``None`` for zeros.
            lengths: The valid lengths, or ``None``.

        Returns:
            The outputs, zero at padded positions; as in :meth:`run`, possibly the buffer
            rnnkit's kernel saved for the backward pass (do not modify it in place).

        Shapes:
            - ``x``: ``(N, L, H_in)``; ``lengths``: ``(N,)``.
            - return: ``(N, L, D·H_out)``.
        """
        if lengths is None or self.spec.bidirectional:
            return self.run(x, h0, lengths)[0]
        shortest, longest = extent(lengths, x.shape[1])
        if shortest == longest:
            return pad_steps(self._call(x[:, :longest], h0)[0], x.shape[1])
        return self._run_padded(x, h0, lengths, longest)

    def _call(self, x: Any, h0: State | None) -> tuple[Any, State]:
        if self._runs_kernel(x):
            return run_kernel(self.rnn, x, h0)
        output, state = self.rnn(x, h0)
        return output, state

    def _runs_kernel(self, x: object) -> bool:
        """Whether rnnkit's kernel runs this call; with ``kernel="rnnkit"``, raise if it cannot."""
        _check_kernel(self.kernel)  # also after an assignment: a typo must not mean "torch"
        cell = self.spec.cell
        if self.kernel == "rnnkit":
            reason = REFUSALS[cell](self.rnn, x)
            if reason is not None:
                raise KernelUnavailableError(
                    f"Expected rnnkit's {cell.upper()} kernel to run (kernel='rnnkit'), but it "
                    f"cannot: {reason}. Hint: kernel='auto' runs torch's layer wherever the "
                    "kernel cannot run."
                )
            return True
        return self.kernel == "auto" and cell in AUTO_CELLS and APPLIES[cell](self.rnn, x)

    def _state_is_last_output(self) -> bool:
        spec = self.spec
        return spec.num_layers == 1 and not spec.bidirectional and spec.cell != "lstm"

    def _run_padded(self, x: Tensor, h0: State | None, lengths: Tensor, longest: int) -> Tensor:
        output = self._call(x[:, :longest], h0)[0]
        mask = valid_mask(lengths, longest, device=output.device)
        return pad_steps(output.masked_fill(~mask.unsqueeze(-1), 0.0), x.shape[1])

    def _run_packed(self, x: Tensor, h0: State | None, lengths: Tensor) -> tuple[Tensor, State]:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, state = self._call(packed, h0)
        padded, _ = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
        return padded, state

    def extra_repr(self) -> str:
        """Show the user-facing layout, the init scheme and the shapes with sizes filled in."""
        activation = f"nonlinearity={self.nonlinearity!r}, " if self.spec.cell == "rnn" else ""
        return (
            f"{activation}batch_first={self.batch_first}, init={self.init!r},\n"
            f"{shape_summary(self.spec)}"
        )


def shape_summary(spec: RecurrentSpec) -> str:
    """Describe the layouts of ``x``, ``output`` and ``h_n`` with the sizes filled in.

    Args:
        spec: The layer stack's contract.

    Returns:
        One line, e.g. ``x (N, L, H_in) = (N, L, 28) -> output (N, L, D·H_out) = (N, L, 256),
        h_n (D·num_layers, N, H_out) = (2, N, 128)``.
    """
    steps = ("N", "L") if spec.batch_first else ("L", "N")
    lead = ", ".join(steps)
    out = spec.D * spec.output_size
    return (
        f"x ({lead}, H_in) = ({lead}, {spec.input_size}) -> "
        f"output ({lead}, D·H_out) = ({lead}, {out}), "
        f"h_n (D·num_layers, N, H_out) = ({spec.D * spec.num_layers}, N, {spec.output_size})"
    )


def batch_state(state: State | None, batched: bool) -> State | None:
    """Give an unbatched state its batch dimension (a view); pass a batched one through.

    Args:
        state: ``h`` or ``(h, c)``, or ``None``.
        batched: Whether the state already has its batch dimension.

    Returns:
        The batched state.

    Shapes:
        - ``state``: ``(D·num_layers, H_out)`` -> ``(D·num_layers, 1, H_out)``.
    """
    if state is None or batched:
        return state
    if isinstance(state, tuple):
        return state[0].unsqueeze(1), state[1].unsqueeze(1)
    return state.unsqueeze(1)


def unbatch_state(state: State, batched: bool) -> State:
    """Drop the batch dimension of a state when the user's input was unbatched.

    Args:
        state: ``h`` or ``(h, c)`` with a batch dimension of size 1 when not ``batched``.
        batched: Whether the user's input was batched.

    Returns:
        The state in the user's layout.

    Shapes:
        - ``state``: ``(D·num_layers, 1, H_out)`` -> ``(D·num_layers, H_out)``.
    """
    if batched:
        return state
    if isinstance(state, tuple):
        return state[0].squeeze(1), state[1].squeeze(1)
    return state.squeeze(1)


def _build_layer(spec: RecurrentSpec, dropout: float, nonlinearity: str) -> nn.RNNBase:
    options: dict[str, Any] = {
        "input_size": spec.input_size,
        "hidden_size": spec.hidden_size,
        "num_layers": spec.num_layers,
        "bidirectional": spec.bidirectional,
        "dropout": dropout,
        "batch_first": True,
    }
    if spec.cell == "rnn":
        return nn.RNN(nonlinearity=nonlinearity, **options)
    if spec.cell == "lstm":
        return nn.LSTM(proj_size=spec.proj_size, **options)
    return nn.GRU(**options)


def _check_dropout(dropout: object, num_layers: int) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f"Expected `dropout` to be a float in [0, 1), but got {dropout!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"Expected `dropout` to be in [0, 1), but got {dropout!r}.")
    if dropout > 0 and num_layers == 1:
        raise ValueError(
            f"Expected `dropout` = 0 with num_layers = 1, but got dropout = {dropout!r}. "
            "Hint: torch applies it between stacked layers only; use num_layers >= 2."
        )


def _check_kernel(kernel: object) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"Expected `kernel` to be one of {KERNELS}, but got {kernel!r}.")


def _check_nonlinearity(nonlinearity: object, cell: str) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(
            f"Expected `nonlinearity` to be one of {NONLINEARITIES}, but got {nonlinearity!r}."
        )
    if cell != "rnn" and nonlinearity != "tanh":
        raise ValueError(
            f"Expected `nonlinearity` = 'tanh' (the default) for cell={cell!r}, but got "
            f"{nonlinearity!r}. Hint: the activation is fixed in LSTM and GRU cells; "
            "`nonlinearity` applies to cell='rnn' only."
        )
