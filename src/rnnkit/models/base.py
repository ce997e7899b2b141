"""What every rnnkit model shares: its encoder, config, contract and rebuild-from-config."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, TypeAlias, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from typing_extensions import Self

from rnnkit._validate import check_int
from rnnkit.data import Standardizer
from rnnkit.errors import ShapeError
from rnnkit.models._data_card import check_classes, check_scaler
from rnnkit.models.config import ModelConfig
from rnnkit.models.encoder import Kernel, RecurrentEncoder, unbatch_state, valid_mask
from rnnkit.shapes import RecurrentSpec, State

__all__ = ["RecurrentModel", "unwrap_model"]

_BatchMajorRun: TypeAlias = Callable[[Tensor, State | None, Tensor | None], tuple[Tensor, State]]
"""What a model computes in the internal layout: ``(x, h0, lengths) -> (values, state)``."""

_Config = TypeVar("_Config", bound=ModelConfig)


class RecurrentModel(nn.Module):
    """Base class of the rnnkit models: a :class:`rnnkit.RecurrentEncoder` and a head.

    Subclasses set :attr:`config_class`, build ``self.encoder`` (with ``_build_encoder``)
    and store ``self.config``.

    Besides its weights, a model can carry what it needs to read and write data in their
    original units: :attr:`classes`, :attr:`input_scaler` and :attr:`target_scaler`. The
    :class:`~rnnkit.Trainer` fills them from the training data, checkpoints save them and
    :func:`~rnnkit.load_model` restores them.

    Attributes:
        config: The options the model was built with (see :mod:`rnnkit.models.config`).
        encoder: The recurrent layers.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    config: ModelConfig
    encoder: RecurrentEncoder
    # Plain attributes, not parameters or buffers: the state_dict and the config stay as they
    # were, and checkpoints without them load as before.
    _classes: np.ndarray[Any, Any] | None = None
    _input_scaler: Standardizer | None = None
    _target_scaler: Standardizer | None = None

    @property
    def classes(self) -> np.ndarray[Any, Any] | None:
        """The original label of each class index (``classes[k]`` is class ``k``), or ``None``.

        Set by :meth:`rnnkit.Trainer.fit` from a training
        :class:`~rnnkit.data.SequenceDataset`'s ``classes`` when the dataset has C classes (a
        model with more classes than its data keeps ``None``), saved in checkpoints and used by
        ``predict_labels``. Set it by hand with C distinct labels of one type, ``str``, ``int``,
        ``float`` or ``bool``; only classifiers and taggers take it (``ValueError`` otherwise).
        """
        return self._classes

    @classes.setter
    def classes(self, value: Any) -> None:
        num_classes = getattr(self.config, "num_classes", None)
        self._classes = check_classes(value, num_classes, type(self).__name__)

    @property
    def input_scaler(self) -> Standardizer | None:
        """The statistics the inputs are standardised with (H_in features), or ``None``.

        Set by :meth:`rnnkit.Trainer.fit` from a training dataset normalised by
        :meth:`rnnkit.data.Standardizer.apply` (or any ``scale``/``mean``/``std``), saved in
        checkpoints, and applied to raw inputs by ``predict_labels`` and ``forecast``.
        Setting it stores a copy; statistics a checkpoint could not store (NaN, infinite,
        ``std`` <= 0; see :func:`rnnkit.data.statistics_problem`) are a ``ValueError``.
        """
        return self._input_scaler

    @input_scaler.setter
    def input_scaler(self, value: Standardizer | None) -> None:
        size = self.encoder.spec.input_size
        self._input_scaler = check_scaler(value, "input_scaler", size, type(self).__name__)

    @property
    def target_scaler(self) -> Standardizer | None:
        """A regressor's output statistics (H_y features), or ``None``.

        Set it by hand to the standardizer the targets were standardised with;
        :meth:`~rnnkit.Seq2SeqRegressor.forecast` maps predictions back to the original units
        with it, and checkpoints save it. Setting it stores a copy.
        """
        return self._target_scaler

    @target_scaler.setter
    def target_scaler(self, value: Standardizer | None) -> None:
        size = getattr(self.config, "output_size", None)
        self._target_scaler = check_scaler(value, "target_scaler", size, type(self).__name__)

    def _build_encoder(self, config: _Config, kernel: Kernel) -> _Config:
        """Build :attr:`encoder` as ``config`` describes it; it checks the options it takes.

        Returns ``config`` with the encoder's ``dropout`` (a ``float``), for :attr:`config`.
        """
        self.encoder = RecurrentEncoder(
            config.input_size,
            config.hidden_size,
            cell=config.cell,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
            proj_size=config.proj_size,
            nonlinearity=config.nonlinearity,
            batch_first=config.batch_first,
            init=config.init,
            kernel=kernel,
        )
        return dataclasses.replace(config, dropout=self.encoder.dropout)

    def _model_inputs(self, x: Tensor, name: str = "x") -> Tensor:
        """Raw ``x`` in the model's units: standardised with :attr:`input_scaler` when set.

        An input of the wrong shape gets the shape contract's error, naming ``name`` and the
        shape as given, before any scaler sees it.
        """
        given: object = x  # callers may pass anything; the check says what came
        if (
            not isinstance(given, Tensor)
            or x.dim() not in (2, 3)
            or x.shape[-1] != self.spec.input_size
        ):
            self.spec.validate_input(x, name=name)
        return x if self._input_scaler is None else self._input_scaler.transform(x)

    def _require_classes(self) -> np.ndarray[Any, Any]:
        """:attr:`classes`, or a ``ValueError`` saying how to set them."""
        if self._classes is None:
            raise ValueError(
                f"Expected the {type(self).__name__} to know its `classes` to return labels, "
                "but `model.classes` is None. Hint: train it with rnnkit.Trainer on a dataset "
                "built by rnnkit.data.from_arrays (or set `model.classes = train.classes`), "
                "or use `predict` for class indices."
            )
        return self._classes

    @property
    def spec(self) -> RecurrentSpec:
        """The shape contract every call is validated against."""
        return self.encoder.spec

    @property
    def batch_first(self) -> bool:
        """Whether inputs and outputs are laid out ``(N, L, ·)`` (rnnkit's default)."""
        return self.encoder.spec.batch_first

    @classmethod
    def from_config(cls, config: ModelConfig | Mapping[str, Any]) -> Self:
        """Build a fresh model (new random weights) from a config or its ``to_dict()``.

        Load weights afterwards with :meth:`torch.nn.Module.load_state_dict`.

        Args:
            config: A config of this model's :attr:`config_class`, or a mapping as
                ``config.to_dict()`` returns it (the ``"model"`` key, if present, must name
                this class).

        Returns:
            The model.

        Raises:
            TypeError: ``config`` is another model's config.
            ValueError: The mapping names another model or has unknown or missing keys.
        """
        if isinstance(config, Mapping):
            config = cls.config_class.from_dict(config)
        if type(config) is not cls.config_class:
            raise TypeError(
                f"Expected `config` to be a {cls.config_class.__name__} or a mapping, but got "
                f"{type(config).__name__}."
            )
        return cls(**config.kwargs())

    def _top_outputs(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None, bool]:
        """Validate a call from zero state and run the encoder in its internal layout.

        Returns:
            ``(output, lengths, batched)``: the top layer's outputs, batched and batch-first
            (zero at padded steps; possibly the kernel's saved buffer, so never modify it in
            place), the lengths, and whether the user's ``x`` was batched.

        Shapes:
            - ``x``: the user's layout; ``output``: ``(N, L, D·H_out)``.
        """
        xb, _, lb, batched = self._to_batch_major(x, None, lengths)
        return self.encoder.run_outputs(xb, None, lb), lb, batched

    def _to_batch_major(
        self,
        x: Tensor,
        h0: State | None,
        lengths: Tensor | None,
        name: str = "x",
        state_name: str = "h_0",
    ) -> tuple[Tensor, State | None, Tensor | None, bool]:
        """Validate a call and bring it to the internal layout; also say if it was batched."""
        batched = self.encoder.validate(x, h0, lengths, name=name, state_name=state_name)
        return *self.encoder.to_batch_major(x, h0, lengths, batched), batched

    def _in_user_layout(
        self,
        run: _BatchMajorRun,
        x: Tensor,
        h0: State | None = None,
        lengths: Tensor | None = None,
        *,
        name: str = "x",
        state_name: str = "h_0",
        per_step: bool = True,
    ) -> tuple[Tensor, State]:
        """Validate a call, compute it in the internal layout, return it in the user's.

        The regressor's calls and :meth:`step` go through here (the classifier's and the
        tagger's through :meth:`_top_outputs`, which shares the first half), so the contract
        is checked and the user's layout (``batch_first``, unbatched) restored in one place.

        Args:
            run: Computes ``(values, state)`` from ``(x, h0, lengths)``, all batched and
                batch-first.
            x: The input sequences, in the user's layout.
            h0: The initial state, or ``None``.
            lengths: The valid lengths, or ``None``.
            name: What the caller calls ``x`` (error messages name it).
            state_name: What the caller calls ``h0`` (error messages name it).
            per_step: ``values`` hold a time dimension, ``(N, L, F)``, laid out as ``x`` is;
                else they hold one row per sequence, ``(N, F)`` (``(F,)`` unbatched).

        Returns:
            ``(values, state)`` in the user's layout.

        Raises:
            rnnkit.errors.ShapeError: ``x``, ``h0`` or ``lengths`` break the shape contract.
        """
        xb, hb, lb, batched = self._to_batch_major(x, h0, lengths, name, state_name)
        values, state = run(xb, hb, lb)
        if per_step:
            values = self.encoder.output_from_batch_major(values, batched)
        elif not batched:
            values = values.squeeze(0)
        return values, unbatch_state(state, batched)

    def step(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run one time step: streaming inference, one input at a time.

        Feeding a sequence's steps one by one, each with the state the previous call
        returned, gives the same results as running the whole sequence at once: a
        :class:`~rnnkit.Seq2SeqRegressor`'s ``y_t`` is ``model(x)[0][:, t]``, a
        :class:`~rnnkit.SequenceClassifier`'s is the logits of the sequence that ends at
        step ``t``. Runs in the model's current train/eval mode.

        Args:
            x_t: One step's input for every sequence.
            state: The state the previous step returned; zeros when omitted (the first step).

        Returns:
            ``(y_t, state)``: this step's output (a regressor's prediction, a classifier's
            logits) and the state to pass to the next call.

        Shapes:
            - ``x_t``: ``(N, H_in)`` (``(H_in,)`` unbatched).
            - ``state``: ``(num_layers, N, H_out)`` (``(num_layers, H_out)`` unbatched;
              LSTM: ``(h, c)``, ``c`` with ``H_cell``).
            - ``y_t``: ``(N, H_y)`` or ``(N, C)`` (``(H_y,)`` or ``(C,)`` unbatched).

        Raises:
            ValueError: The model is bidirectional (its backward direction needs the whole
                sequence), or a classifier's readout is ``"mean"`` or ``"max"``.
            rnnkit.errors.ShapeError: ``x_t`` or ``state`` break the shape contract.
        """
        self._check_step()
        _check_step_input(x_t, self.spec, next(self.encoder.parameters()).dtype)
        _check_step_state(x_t, state, self.spec)
        unbatched_or_time_first = x_t.dim() == 1 or not self.batch_first
        sequence = x_t.unsqueeze(0) if unbatched_or_time_first else x_t.unsqueeze(1)
        return self._in_user_layout(
            self._one_step, sequence, state, state_name="state", per_step=False
        )

    def _one_step(
        self, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State]:
        """:meth:`step` in the internal layout: ``x`` is ``(N, 1, H_in)``."""
        output, new_state = self.encoder.run(x, state, lengths)
        return self._step_output(output[:, 0]), new_state

    def _check_step(self) -> None:
        """Raise unless the model can run one step at a time (see :meth:`step`)."""
        if self.spec.bidirectional:
            raise ValueError(
                "Expected a unidirectional model to run step by step, but this one is "
                "bidirectional. Hint: a backward direction needs the whole sequence before "
                "its first output; call the model on whole sequences instead."
            )

    def _step_output(self, top: Tensor) -> Tensor:
        """This step's result from the top layer's output ``(N, H_out)``."""
        raise NotImplementedError


def _check_step_input(x_t: object, spec: RecurrentSpec, dtype: torch.dtype) -> None:
    """Check ``x_t`` as the caller passed it, so that errors name ``x_t`` and its own shape."""
    size = spec.input_size
    if not (isinstance(x_t, Tensor) and x_t.dim() in (1, 2) and x_t.shape[-1] == size):
        got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
        raise ShapeError(
            f"Expected `x_t` to have shape (N, H_in) = (?, {size}) or, unbatched, (H_in,) = "
            f"({size},), but got {got}. Hint: step() takes one time step of every sequence; "
            "call the model itself on whole sequences (N, L, H_in)."
        )
    if x_t.dim() == 2 and x_t.shape[0] == 0:
        raise ShapeError(
            f"Expected `x_t` to have shape (N, H_in) = (?, {size}) with N >= 1, but got "
            f"{tuple(x_t.shape)}. Hint: the batch is empty; skip empty batches."
        )
    if x_t.dtype != dtype:
        model = f", or the model with model.to({x_t.dtype})" if x_t.is_floating_point() else ""
        raise ShapeError(
            f"Expected `x_t` to be a {dtype} tensor (the layer's dtype) of shape (N, H_in) = "
            f"(?, {size}), but got a {x_t.dtype} tensor of shape {tuple(x_t.shape)}. Hint: "
            f"convert it with x_t.to({dtype}){model}."
        )


def _check_step_state(x_t: Tensor, state: State | None, spec: RecurrentSpec) -> None:
    """A batched state's N must be ``x_t``'s, named here before ``x_t`` becomes a sequence."""
    parts = tuple(state) if isinstance(state, tuple | list) else (state,)
    if state is None or x_t.dim() != 2:
        return
    n, rows = x_t.shape[0], spec.D * spec.num_layers
    sizes = (("H_out", spec.output_size), ("H_cell", spec.hidden_size))
    for k, h in enumerate(parts[:2]):
        if isinstance(h, Tensor) and h.dim() == 3 and h.shape[1] != n:
            name = "state" if len(parts) == 1 else f"state[{k}]"
            symbol, size = sizes[k]
            raise ShapeError(
                f"Expected `{name}` to have shape (D·num_layers, N, {symbol}) = ({rows}, {n}, "
                f"{size}), but got {tuple(h.shape)}. Hint: `x_t` {tuple(x_t.shape)} holds "
                f"N = {n} sequences; pass the state the previous step returned for them, or "
                "None to start them from zeros."
            )


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Run a block in eval mode without autograd, then restore the module's mode.

    Args:
        module: The model to switch.

    Yields:
        Nothing; the block runs with dropout off and gradients disabled.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def zero_padded_steps(values: Tensor, lengths: Tensor | None) -> Tensor:
    """Return per-step values with every padded step set to zero (a new tensor if any is).

    Args:
        values: Per-step values, batch-first.
        lengths: Each sequence's valid length, or ``None`` (nothing is padded).

    Returns:
        ``values``, or a copy that is zero beyond each sequence's length.

    Shapes:
        - ``values``: ``(N, L, F)``; ``lengths``: ``(N,)``.
    """
    steps = values.shape[1]
    if lengths is None or int(lengths.min()) >= steps:
        return values
    mask = valid_mask(lengths, steps, device=values.device)
    return values.masked_fill(~mask.unsqueeze(-1), 0.0)


def check_num_classes(num_classes: object) -> None:
    """Raise unless ``num_classes`` is an int >= 2.

    One class would train to a loss of 0 whatever the model does (the softmax of one logit is
    always 1), so it is refused.

    Raises:
        TypeError: Not an int.
        ValueError: Below 2.
    """
    check_int("num_classes", num_classes, 1)
    if num_classes == 1:
        raise ValueError(
            "Expected `num_classes` >= 2, but got 1: with one class the loss is 0 whatever the "
            "model predicts. Hint: binary classification uses num_classes=2 (labels 0 and 1)."
        )


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the user's model inside any wrappers around it.

    Unwraps :class:`torch.nn.DataParallel`, :class:`~torch.nn.parallel.DistributedDataParallel`,
    ``torch.compile``'s module and rnnkit's own DDP wrapper, however they are nested.

    Args:
        model: A model, wrapped or not.

    Returns:
        The innermost model (``model`` itself when it is not wrapped).
    """
    while (inner := _wrapped(model)) is not None:
        model = inner
    return model


def _wrapped(model: nn.Module) -> nn.Module | None:
    """The module ``model`` wraps, or ``None`` when it wraps none."""
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        module: nn.Module = model.module
        return module
    # torch.compile's OptimizedModule keeps the original in `_orig_mod`; rnnkit's wrappers
    # declare `_rnnkit_wrapper = True` and keep theirs in `model`.
    inner = getattr(model, "model", None) if getattr(model, "_rnnkit_wrapper", False) else None
    inner = getattr(model, "_orig_mod", inner)
    return inner if isinstance(inner, nn.Module) else None
