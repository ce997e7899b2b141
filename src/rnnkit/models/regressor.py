"""Many-to-many: :class:`Seq2SeqRegressor`, with free-running generation and closed-loop rollout."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from rnnkit._validate import check_int
from rnnkit.data import Standardizer
from rnnkit.errors import ShapeError
from rnnkit.models.base import RecurrentModel, evaluating, zero_padded_steps
from rnnkit.models.config import RegressorConfig
from rnnkit.models.encoder import Kernel, Nonlinearity
from rnnkit.models.initializers import InitScheme
from rnnkit.shapes import CellType, State

__all__ = ["Feedback", "Seq2SeqRegressor"]

Feedback = Callable[[Tensor], Tensor]
"""Maps one step's predictions ``(N, H_y)`` to the next step's inputs ``(N, H_in)``."""


class Seq2SeqRegressor(RecurrentModel):
    """Predict a value at every step: recurrent layers and a per-step linear head.

    ``Seq2SeqRegressor(1)`` predicts the next value of a univariate series (H_in = H_y = 1,
    hidden 16). The head maps ``D·H_out`` features to ``output_size`` values at each step, so
    ``output_size`` need not equal ``input_size``.

    Args:
        input_size: Features per step, H_in.
        output_size: Values predicted per step, H_y (``None``: equal to ``input_size``).
        hidden_size: State size H_cell (16 by default).
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        num_layers: Stacked recurrent layers.
        bidirectional: Also run every layer backwards in time (D = 2); such a model cannot
            :meth:`generate` or :meth:`rollout`, which need each step to see only the past.
        dropout: Dropout between stacked layers (needs ``num_layers`` > 1).
        proj_size: LSTM only: project the state to this size (then H_out = ``proj_size``).
        nonlinearity: ``"tanh"`` or ``"relu"`` (``cell="rnn"`` only).
        batch_first: Tensors laid out ``(N, L, ·)`` (default) or ``(L, N, ·)``.
        init: ``"default"``, ``"orthogonal"`` or ``"identity"``; see
            :mod:`rnnkit.models.initializers`.
        kernel: Which code runs the recurrent layers, ``"auto"``, ``"torch"`` or ``"rnnkit"``
            (see :class:`~rnnkit.RecurrentEncoder`). A runtime choice: not part of
            :attr:`config` or a checkpoint; set ``model.encoder.kernel`` to switch later.

    Raises:
        ValueError: An option is out of range or does not apply to this cell.
        TypeError: An option has the wrong type.

    Attributes:
        config: The options above, as a :class:`~rnnkit.models.config.RegressorConfig`.
        encoder: The recurrent layers.
        head: The per-step linear layer, ``D·H_out`` features to H_y values.
    """

    config_class: ClassVar[type[RegressorConfig]] = RegressorConfig
    config: RegressorConfig

    def __init__(
        self,
        input_size: int,
        output_size: int | None = None,
        hidden_size: int = 16,
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
        config = RegressorConfig(
            input_size=input_size,
            output_size=input_size if output_size is None else output_size,
            hidden_size=hidden_size,
            cell=cell,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            proj_size=proj_size,
            nonlinearity=nonlinearity,
            batch_first=batch_first,
            init=init,
        )
        config = self._build_encoder(config, kernel)
        self.config = dataclasses.replace(
            config, output_size=_check_output_size(config.output_size)
        )
        self.head = nn.Linear(self.spec.D * self.spec.output_size, self.config.output_size)

    @property
    def output_size(self) -> int:
        """H_y, the values predicted per step."""
        return self.config.output_size

    def forward(
        self, x: Tensor, h0: State | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """Predict every step's value (teacher forcing: the inputs are the given ``x``).

        Args:
            x: The input sequences.
            h0: The initial state, ``h_0`` (or ``(h_0, c_0)`` for an LSTM); zeros on ``x``'s
                device and dtype when omitted.
            lengths: Each sequence's valid length (int64, on the CPU, each in ``1..L``) for a
                right-padded batch.

        Returns:
            ``(y, h_n)``: the predictions, zero at padded positions, and the final state, each
            sequence's at its last valid step (``(h_n, c_n)`` for an LSTM).

        Shapes:
            - ``x``: ``(N, L, H_in)`` (``(L, N, H_in)`` if not ``batch_first``; ``(L, H_in)``
              unbatched).
            - ``h0``, ``h_n``: ``(D·num_layers, N, H_out)`` (``(D·num_layers, H_out)``
              unbatched); ``c_0``, ``c_n``: ``(D·num_layers, N, H_cell)``.
            - ``lengths``: ``(N,)``.
            - ``y``: ``(N, L, H_y)`` (``(L, N, H_y)`` if not ``batch_first``; ``(L, H_y)``
              unbatched).

        Raises:
            rnnkit.errors.ShapeError: ``x``, ``h0`` or ``lengths`` break the shape contract.
        """
        return self._in_user_layout(self._teacher_forced, x, h0, lengths)

    def generate(
        self,
        prime: Tensor,
        steps: int,
        h0: State | None = None,
        feedback: Feedback | None = None,
    ) -> tuple[Tensor, State]:
        """Generate free-running: run ``prime``, then feed each prediction back as input.

        The first prediction is the output at ``prime``'s last step; each next one is the
        output for ``feedback(previous prediction)`` (the prediction itself by default). The
        call ``generate(torch.zeros(1, 1, 1), steps=100)`` primes with the single value ``[0]``.
        Runs in eval mode without autograd (no graph is kept; the results do not require
        grad); the model's train/eval mode is restored afterwards.

        Args:
            prime: The warm-up sequence: one step such as ``[0]``, or longer.
            steps: How many predictions to return (>= 1).
            h0: The state before ``prime``; zeros when omitted.
            feedback: Maps a prediction ``(N, H_y)`` to the next input ``(N, H_in)``;
                needed when ``output_size != input_size``.

        Returns:
            ``(predictions, state)``: the ``steps`` predictions that follow ``prime``, and the
            state after the last input fed (feed ``predictions[:, -1]`` with it to go on).

        Shapes:
            - ``prime``: ``(N, P, H_in)`` (``(P, N, H_in)`` if not ``batch_first``;
              ``(P, H_in)`` unbatched).
            - ``h0``, ``state``: ``(num_layers, N, H_out)`` (LSTM: ``(h, c)``).
            - ``predictions``: ``(N, steps, H_y)`` (``(steps, N, H_y)`` if not
              ``batch_first``; ``(steps, H_y)`` unbatched).

        Raises:
            ValueError: The model is bidirectional, ``steps`` < 1, or no ``feedback`` was
                given while ``output_size != input_size``.
            rnnkit.errors.ShapeError: ``prime``, ``h0`` or a ``feedback`` result break the contract.
        """
        self._check_causal("generate")
        _check_steps(steps)
        step_input = self._feedback(feedback)

        def free_running(xb: Tensor, hb: State | None, _: Tensor | None) -> tuple[Tensor, State]:
            with evaluating(self):
                generated = self._generate(xb, hb, steps, step_input)
            return generated

        return self._in_user_layout(free_running, prime, h0, name="prime")

    def forecast(
        self,
        history: Tensor,
        steps: int,
        h0: State | None = None,
        feedback: Feedback | None = None,
    ) -> Tensor:
        """Forecast ``steps`` values after ``history``, both in original units.

        :meth:`generate` between the model's scalers: ``history`` is standardised with
        :attr:`~rnnkit.models.base.RecurrentModel.input_scaler` and the predictions are
        mapped back with :attr:`~rnnkit.models.base.RecurrentModel.target_scaler`
        (each only when set), so the model needs no manual transforms after
        :func:`~rnnkit.load_model`. ``feedback`` works in the model's units, as for
        :meth:`generate`; by default each prediction is fed back in the input's units (mapped
        back with ``target_scaler`` and standardised with ``input_scaler``).

        Args:
            history: The observed series, in the units of the raw data.
            steps: How many values to forecast (>= 1).
            h0: The state before ``history``; zeros when omitted.
            feedback: Maps a prediction ``(N, H_y)`` to the next input ``(N, H_in)``, both in
                the model's units; needed when ``output_size != input_size``.

        Returns:
            The ``steps`` values that follow ``history``.

        Shapes:
            - ``history``: ``(N, P, H_in)`` (``(P, N, H_in)`` if not ``batch_first``;
              ``(P, H_in)`` unbatched).
            - return: ``(N, steps, H_y)`` (``(steps, N, H_y)`` if not ``batch_first``;
              ``(steps, H_y)`` unbatched).

        Raises:
            ValueError: As for :meth:`generate`.
            rnnkit.errors.ShapeError: ``history`` or ``h0`` break the shape contract.
        """
        feedback = self._between_scalers() if feedback is None else feedback
        predictions, _ = self.generate(self._model_inputs(history, "history"), steps, h0, feedback)
        scaler = self.target_scaler
        return predictions if scaler is None else scaler.inverse_transform(predictions)

    def _between_scalers(self) -> Feedback | None:
        """A prediction, in the target's model units, as the next input in the input's."""
        source, target = self.target_scaler, self.input_scaler
        if (source is None and target is None) or self.output_size != self.spec.input_size:
            return None  # nothing to map, or generate's own error asks for a feedback
        if source is not None and target is not None and _same_statistics(source, target):
            return None

        def feed(y: Tensor) -> Tensor:
            raw = y if source is None else source.inverse_transform(y)
            return raw if target is None else target.transform(raw)

        return feed

    def rollout(
        self,
        x: Tensor,
        teacher_forcing_ratio: float,
        h0: State | None = None,
        generator: torch.Generator | None = None,
        feedback: Feedback | None = None,
        previous: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """Run closed-loop over ``x`` for training: scheduled sampling between two extremes.

        Step 0's input is ``x[:, 0]``, unless ``previous`` continues a closed loop: then step
        0 is fed like the others, with ``previous`` as the prediction before it. For every
        later step ``t`` and every sequence
        ``n``, a coin with probability ``teacher_forcing_ratio`` decides the input: the
        given ``x[n, t]`` (teacher forcing) or ``feedback(y[n, t - 1])``, the model's own
        previous prediction (the prediction itself by default). Gradients flow through the
        fed-back predictions too (back-propagation through the closed loop).

        - ``teacher_forcing_ratio=1``: exactly :meth:`forward` ``(x, h0)``, plain teacher
          forcing; no coins are drawn.
        - ``teacher_forcing_ratio=0``: fully free-running from ``x[:, 0]`` (from ``previous``
          when given); no coins are drawn; the values equal ``generate(x[:, :1], L)`` but keep
          the graph.
        - in between: ``N·L`` uniform draws from ``generator`` (torch's global generator if
          ``None``); runs of steps where every sequence is teacher-forced go through the
          recurrent layers in one call.

        Runs in the model's current train/eval mode.

        Args:
            x: The teacher inputs; for next-step prediction, ``y[:, t]`` targets ``x[:, t+1]``.
            teacher_forcing_ratio: The probability in ``[0, 1]`` of feeding the given input.
            h0: The initial state; zeros when omitted.
            generator: The random generator for the coins, for reproducible runs.
            feedback: Maps a prediction ``(N, H_y)`` to the next input ``(N, H_in)``;
                needed when ``output_size != input_size``.
            previous: The prediction that precedes ``x[:, 0]``, e.g. the last step of the
                previous window under truncated BPTT (detach it to cut the gradient there);
                unused with ratio 1.

        Returns:
            ``(y, h_n)`` as :meth:`forward` returns them, differentiable.

        Shapes:
            - ``x``: ``(N, L, H_in)`` (``(L, N, H_in)`` if not ``batch_first``; ``(L, H_in)``
              unbatched).
            - ``h0``, ``h_n``: ``(num_layers, N, H_out)`` (LSTM: ``(h, c)``).
            - ``y``: ``(N, L, H_y)`` in ``x``'s layout.
            - ``previous``: ``(N, H_y)`` (``(H_y,)`` unbatched).

        Raises:
            ValueError: The model is bidirectional, the ratio is outside ``[0, 1]``, or no
                ``feedback`` was given while ``output_size != input_size``.
            rnnkit.errors.ShapeError: ``x``, ``h0``, ``previous`` or a ``feedback`` result
                break the contract.
        """
        self._check_causal("rollout")
        ratio = _check_ratio(teacher_forcing_ratio)
        step_input = self._feedback(feedback)
        if previous is not None:
            self.spec.validate_input(x)
            _check_previous(previous, x, self.batch_first, self.output_size)
        if ratio == 1.0:
            teacher_forced: tuple[Tensor, State] = self(x, h0)
            return teacher_forced

        def closed_loop(xb: Tensor, hb: State | None, _: Tensor | None) -> tuple[Tensor, State]:
            teacher = _coin_flips(xb.shape[0], xb.shape[1], ratio, generator)
            if previous is not None:  # step 0 continues the loop: its own coin decides
                xb = _first_step_fed(xb, teacher[:, 0], step_input(previous.view(len(xb), -1)))
            return self._rollout(xb, hb, teacher, step_input)

        return self._in_user_layout(closed_loop, x, h0)

    def _teacher_forced(
        self, x: Tensor, h0: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State]:
        """:meth:`forward` in the internal layout: the head on every step, zero at padding."""
        output, state = self.encoder.run(x, h0, lengths)
        return zero_padded_steps(self.head(output), lengths), state

    def _generate(
        self, x: Tensor, state: State | None, steps: int, step_input: Feedback
    ) -> tuple[Tensor, State]:
        output, new_state = self.encoder.run(x, state)
        predictions = [self.head(output[:, -1:])]
        for _ in range(steps - 1):
            output, new_state = self.encoder.run(step_input(predictions[-1][:, 0]), new_state)
            predictions.append(self.head(output))
        return torch.cat(predictions, dim=1), new_state

    def _rollout(
        self, x: Tensor, state: State | None, teacher: Tensor, step_input: Feedback
    ) -> tuple[Tensor, State]:
        (_, end), *rest = _segments(teacher)
        output, new_state = self.encoder.run(x[:, :end], state)
        pieces = [self.head(output)]
        for start, end in rest:
            given = teacher[:, start].to(x.device, non_blocking=True).view(-1, 1, 1)
            fed = torch.where(given, x[:, start : start + 1], step_input(pieces[-1][:, -1]))
            inputs = torch.cat([fed, x[:, start + 1 : end]], dim=1)
            output, new_state = self.encoder.run(inputs, new_state)
            pieces.append(self.head(output))
        return torch.cat(pieces, dim=1), new_state

    def _step_output(self, top: Tensor) -> Tensor:
        y: Tensor = self.head(top)
        return y

    def _feedback(self, feedback: Feedback | None) -> Feedback:
        """Return a function from predictions ``(N, H_y)`` to checked inputs ``(N, 1, H_in)``."""
        spec = self.spec
        if feedback is None and self.output_size != spec.input_size:
            raise ValueError(
                f"Expected output_size == input_size to feed predictions back as inputs, but "
                f"got output_size = {self.output_size}, input_size = {spec.input_size}. "
                "Hint: pass `feedback`, a function mapping a prediction (N, H_y) to the next "
                "input (N, H_in)."
            )

        def step_input(prediction: Tensor) -> Tensor:
            fed = prediction if feedback is None else feedback(prediction)
            _check_fed(fed, prediction, spec.input_size)
            return fed.unsqueeze(1)

        return step_input

    def _check_causal(self, method: str) -> None:
        if self.spec.bidirectional:
            raise ValueError(
                f"Expected a unidirectional model for {method}(), but this one is "
                "bidirectional. Hint: a backward direction needs the future inputs that "
                "free-running generation has not produced yet; use bidirectional=False."
            )

    def extra_repr(self) -> str:
        """Show the data flow with the sizes filled in."""
        spec = self.spec
        lead = "N, L" if spec.batch_first else "L, N"
        width = spec.D * spec.output_size
        return (
            f"x ({lead}, H_in) = ({lead}, {spec.input_size}) -> output ({lead}, D·H_out) = "
            f"({lead}, {width}) -> y ({lead}, H_y) = ({lead}, {self.output_size})"
        )


def _coin_flips(batch: int, steps: int, ratio: float, generator: torch.Generator | None) -> Tensor:
    """``True`` where the given input is fed; drawn only for ``0 < ratio < 1``."""
    if ratio == 0.0:
        return torch.zeros(batch, steps, dtype=torch.bool)
    device = generator.device if generator is not None else torch.device("cpu")
    draws = torch.rand(batch, steps, generator=generator, device=device)
    return (draws < ratio).cpu()


def _check_previous(previous: object, x: Tensor, batch_first: bool, output_size: int) -> None:
    """Raise unless ``previous`` is floating ``(N, H_y)`` (``(H_y,)`` unbatched) like ``x``."""
    expected: tuple[int, ...]
    if x.dim() == 2:
        expected, layout = (output_size,), f"(H_y,) = ({output_size},)"
    else:
        n = x.shape[0] if batch_first else x.shape[1]
        expected, layout = (n, output_size), f"(N, H_y) = ({n}, {output_size})"
    if isinstance(previous, Tensor):
        fits = tuple(previous.shape) == expected and previous.device == x.device
        if fits and previous.is_floating_point():
            return
        got = f"{tuple(previous.shape)} {previous.dtype} on {previous.device}"
    else:
        got = type(previous).__name__
    raise ShapeError(
        f"Expected `previous` to have shape {layout}, floating point on {x.device} like `x`, "
        f"but got {got}. Hint: pass the last step of the previous rollout's output, "
        "y[:, -1] (batch-first) or y[-1] (time-major)."
    )


def _first_step_fed(x: Tensor, given: Tensor, fed: Tensor) -> Tensor:
    """``x`` with step 0 replaced by ``fed`` where its coin (``given``) is False.

    Shapes:
        - ``x``: ``(N, L, H_in)``; ``given``: ``(N,)``; ``fed``: ``(N, 1, H_in)``.
    """
    keep = given.to(x.device, non_blocking=True).view(-1, 1, 1)
    return torch.cat([torch.where(keep, x[:, :1], fed.to(x.dtype)), x[:, 1:]], dim=1)


def _segments(teacher: Tensor) -> list[tuple[int, int]]:
    """Split steps ``0..L`` where some sequence feeds back its prediction."""
    steps = teacher.shape[1]
    fed_back = (~teacher[:, 1:].all(dim=0)).nonzero().flatten() + 1
    starts = [0, *fed_back.tolist()]
    return list(zip(starts, [*starts[1:], steps], strict=True))


def _check_fed(fed: object, prediction: Tensor, input_size: int) -> None:
    expected = (prediction.shape[0], input_size)
    if not isinstance(fed, Tensor) or tuple(fed.shape) != expected:
        got = tuple(fed.shape) if isinstance(fed, Tensor) else type(fed).__name__
        raise ShapeError(
            f"Expected `feedback(y)` to have shape (N, H_in) = {expected}, but got {got}. "
            "Hint: `feedback` maps one step's predictions (N, H_y) to the next inputs "
            "(N, H_in)."
        )
    if fed.dtype != prediction.dtype or fed.device != prediction.device:
        raise ShapeError(
            f"Expected `feedback(y)` to have dtype {prediction.dtype} on {prediction.device}, "
            f"but got {fed.dtype} on {fed.device}. Hint: return a tensor like the prediction "
            "it was given."
        )


def _check_steps(steps: object) -> None:
    check_int("steps", steps, 1)


def _check_ratio(ratio: object) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f"Expected `teacher_forcing_ratio` to be a float, but got {ratio!r}.")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"Expected `teacher_forcing_ratio` in [0, 1], but got {ratio!r}.")
    return float(ratio)


def _check_output_size(output_size: object) -> int:
    return check_int("output_size", output_size, 1)


def _same_statistics(a: Standardizer, b: Standardizer) -> bool:
    """Equal statistics, one number or one per feature alike."""
    pairs = ((a.mean, b.mean), (a.std, b.std))
    return all(bool((x == y).all()) for x, y in pairs)  # () against (F,) broadcasts
