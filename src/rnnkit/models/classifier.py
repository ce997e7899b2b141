"""Many-to-one: :class:`SequenceClassifier`, a recurrent encoder, a readout and a linear head."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from rnnkit.data import decode_labels
from rnnkit.models.base import RecurrentModel, check_num_classes, evaluating
from rnnkit.models.config import ClassifierConfig
from rnnkit.models.encoder import Kernel, Nonlinearity
from rnnkit.models.initializers import InitScheme
from rnnkit.models.readouts import Readout, apply_readout, check_readout
from rnnkit.shapes import CellType

__all__ = ["SequenceClassifier"]


class SequenceClassifier(RecurrentModel):
    """Classify whole sequences: recurrent layers, a readout, then a linear layer to logits.

    A classic MNIST-by-rows model is ``SequenceClassifier(28, 10, 128, nonlinearity="relu")``.
    ``readout="last"`` (the default) reads every direction's final state, which is right for
    bidirectional and padded batches too; ``readout="output_last"`` reads ``output[:, -1]``.

    Args:
        input_size: Features per step, H_in (28 for MNIST read row by row).
        num_classes: C, the number of classes.
        hidden_size: State size H_cell (128 by default).
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        num_layers: Stacked recurrent layers.
        bidirectional: Also run every layer backwards in time (D = 2).
        dropout: Dropout between stacked layers (needs ``num_layers`` > 1).
        proj_size: LSTM only: project the state to this size (then H_out = ``proj_size``).
        nonlinearity: ``"tanh"`` or ``"relu"`` (``cell="rnn"`` only).
        readout: ``"last"``, ``"mean"``, ``"max"`` or ``"output_last"``; see
            :mod:`rnnkit.models.readouts`.
        batch_first: Tensors laid out ``(N, L, H_in)`` (default) or ``(L, N, H_in)``.
        init: ``"default"``, ``"orthogonal"`` or ``"identity"``; see
            :mod:`rnnkit.models.initializers`.
        kernel: Which code runs the recurrent layers, ``"auto"``, ``"torch"`` or ``"rnnkit"``
            (see :class:`~rnnkit.RecurrentEncoder`). A runtime choice: not part of
            :attr:`config` or a checkpoint; set ``model.encoder.kernel`` to switch later.

    Raises:
        ValueError: An option is out of range or does not apply to this cell.
        TypeError: An option has the wrong type.

    Attributes:
        config: The options above, as a :class:`~rnnkit.models.config.ClassifierConfig`.
        encoder: The recurrent layers.
        head: The linear layer from the readout, ``D·H_out`` features, to C logits.
    """

    config_class: ClassVar[type[ClassifierConfig]] = ClassifierConfig
    config: ClassifierConfig

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        hidden_size: int = 128,
        *,
        cell: CellType = "rnn",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        proj_size: int = 0,
        nonlinearity: Nonlinearity = "tanh",
        readout: Readout = "last",
        batch_first: bool = True,
        init: InitScheme = "default",
        kernel: Kernel = "auto",
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        check_readout(readout)
        config = ClassifierConfig(
            input_size=input_size,
            num_classes=num_classes,
            hidden_size=hidden_size,
            cell=cell,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            proj_size=proj_size,
            nonlinearity=nonlinearity,
            readout=readout,
            batch_first=batch_first,
            init=init,
        )
        self.config = self._build_encoder(config, kernel)
        self.head = nn.Linear(self.spec.D * self.spec.output_size, num_classes)

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return self.config.num_classes

    @property
    def readout(self) -> Readout:
        """The readout's name."""
        return self.config.readout

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Compute class logits for every sequence (zero initial state).

        ``x`` is in the model's units (standardised, as in training); see :meth:`predict_labels`.

        Args:
            x: The input sequences.
            lengths: Each sequence's valid length (int64, on the CPU, each in ``1..L``) for a
                right-padded batch; padded steps never reach the readout.

        Returns:
            Unnormalised class scores (for :class:`torch.nn.CrossEntropyLoss`).

        Shapes:
            - ``x``: ``(N, L, H_in)`` (``(L, N, H_in)`` if not ``batch_first``; ``(L, H_in)``
              unbatched).
            - ``lengths``: ``(N,)``.
            - return: ``(N, C)`` (``(C,)`` unbatched).

        Raises:
            rnnkit.errors.ShapeError: ``x`` or ``lengths`` break the shape contract (or
                ``readout="output_last"`` is given a sequence shorter than ``L``).
        """
        logits: Tensor = self.head(self._features(x, lengths))
        return logits

    def features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Return the readout's feature vectors, the head's input.

        Args:
            x: The input sequences, as for :meth:`forward`.
            lengths: The valid lengths, as for :meth:`forward`.

        Returns:
            One vector per sequence.

        Shapes:
            - ``x``: as for :meth:`forward`; return: ``(N, D·H_out)`` (``(D·H_out,)``
              unbatched).
        """
        # a copy: the readout may be a slice of the kernel's saved buffer, or amax's result,
        # which backward reads; the caller may edit what it gets in place
        return self._features(x, lengths).clone()

    def _features(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """The readout's features, unbatched as ``x`` is, without :meth:`features`' copy."""
        output, lb, batched = self._top_outputs(x, lengths)
        features = apply_readout(self.readout, output, lb, hidden=self.spec.output_size)
        return features if batched else features.squeeze(0)

    def predict_proba(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Class probabilities (softmax of the logits), in eval mode and without autograd.

        The model's train/eval mode is restored afterwards. ``x`` is in the model's units.

        Args:
            x: The input sequences, as for :meth:`forward`.
            lengths: The valid lengths, as for :meth:`forward`.

        Returns:
            Probabilities summing to 1 over the classes.

        Shapes:
            - return: ``(N, C)`` (``(C,)`` unbatched).
        """
        with evaluating(self):
            logits: Tensor = self(x, lengths)
            return logits.softmax(dim=-1)

    def predict(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The most likely class of every sequence, in eval mode and without autograd.

        ``x`` is in the model's units; :meth:`predict_labels` takes raw data.

        Args:
            x: The input sequences, as for :meth:`forward`.
            lengths: The valid lengths, as for :meth:`forward`.

        Returns:
            Class indices (int64).

        Shapes:
            - return: ``(N,)`` (``()`` unbatched).
        """
        with evaluating(self):
            logits: Tensor = self(x, lengths)
            return logits.argmax(dim=-1)

    def predict_labels(self, x: Tensor, lengths: Tensor | None = None) -> Any:
        """The most likely original label of every sequence, from raw inputs.

        Standardises ``x`` with the model's
        :attr:`~rnnkit.models.base.RecurrentModel.input_scaler` (when set), predicts,
        and maps the class indices to its :attr:`~rnnkit.models.base.RecurrentModel.classes`:
        the labels the training data had, also after :func:`~rnnkit.load_model`.

        Args:
            x: The input sequences in the units of the raw training data.
            lengths: The valid lengths, as for :meth:`forward`.

        Returns:
            A :class:`numpy.ndarray` of labels (one label, unbatched).

        Raises:
            ValueError: The model has no :attr:`~rnnkit.models.base.RecurrentModel.classes`.
            rnnkit.errors.ShapeError: ``x`` or ``lengths`` break the shape contract.

        Shapes:
            - ``x``: as for :meth:`forward`; return: ``(N,)`` (a scalar unbatched).
        """
        classes = self._require_classes()
        return decode_labels(self.predict(self._model_inputs(x), lengths), classes)

    def _check_step(self) -> None:
        super()._check_step()
        if self.readout not in ("last", "output_last"):
            raise ValueError(
                f"Expected readout='last' or 'output_last' to run step by step, but got "
                f"readout={self.readout!r}. Hint: a {self.readout} over the steps is known "
                "only at the end of the sequence; call the model on whole sequences instead."
            )

    def _step_output(self, top: Tensor) -> Tensor:
        logits: Tensor = self.head(top)
        return logits

    def extra_repr(self) -> str:
        """Show the data flow with the sizes filled in."""
        spec = self.spec
        lead = "N, L" if spec.batch_first else "L, N"
        width = spec.D * spec.output_size
        return (
            f"x ({lead}, H_in) = ({lead}, {spec.input_size}) -> readout={self.readout!r} "
            f"(N, D·H_out) = (N, {width}) -> logits (N, C) = (N, {self.num_classes})"
        )
