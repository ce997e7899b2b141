"""Per-step classification: :class:`SequenceTagger`, recurrent layers and a per-step linear head."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from rnnkit.data import decode_labels
from rnnkit.models.base import RecurrentModel, check_num_classes, evaluating, zero_padded_steps
from rnnkit.models.config import TaggerConfig
from rnnkit.models.encoder import Kernel, Nonlinearity
from rnnkit.models.initializers import InitScheme
from rnnkit.shapes import CellType

__all__ = ["SequenceTagger"]


class SequenceTagger(RecurrentModel):
    """Classify every step of a sequence (sequence labelling): recurrent layers, then logits.

    The same linear layer maps each step's output, ``D·H_out`` features, to C class logits,
    so a step's label can depend on every earlier step (and, with ``bidirectional=True``,
    every later one). Train it with per-step class indices ``(N, L)``; steps labelled
    ``-100`` (PyTorch's ``ignore_index``) and padded steps do not count.

    Args:
        input_size: Features per step, H_in.
        num_classes: C, the number of classes per step.
        hidden_size: State size H_cell.
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        num_layers: Stacked recurrent layers.
        bidirectional: Also run every layer backwards in time (D = 2).
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
        config: The options above, as a :class:`~rnnkit.models.config.TaggerConfig`.
        encoder: The recurrent layers.
        head: The per-step linear layer, ``D·H_out`` features to C logits.

    Example:
        >>> import torch
        >>> from rnnkit import SequenceTagger
        >>> tagger = SequenceTagger(8, num_classes=5, hidden_size=16, cell="gru")
        >>> tagger(torch.randn(4, 12, 8)).shape
        torch.Size([4, 12, 5])
    """

    config_class: ClassVar[type[TaggerConfig]] = TaggerConfig
    config: TaggerConfig

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
        batch_first: bool = True,
        init: InitScheme = "default",
        kernel: Kernel = "auto",
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        config = TaggerConfig(
            input_size=input_size,
            num_classes=num_classes,
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
        self.config = self._build_encoder(config, kernel)
        self.head = nn.Linear(self.spec.D * self.spec.output_size, num_classes)

    @property
    def num_classes(self) -> int:
        """C, the number of classes per step."""
        return self.config.num_classes

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Compute class logits at every step (zero initial state).

        ``x`` is in the model's units (standardised, as in training); see :meth:`predict_labels`.

        Args:
            x: The input sequences.
            lengths: Each sequence's valid length (int64, on the CPU, each in ``1..L``) for a
                right-padded batch; the logits are zero at padded steps.

        Returns:
            Unnormalised class scores per step (for :class:`torch.nn.CrossEntropyLoss`, after
            flattening the steps: ``loss(logits.flatten(0, 1), y.flatten())``).

        Shapes:
            - ``x``: ``(N, L, H_in)`` (``(L, N, H_in)`` if not ``batch_first``; ``(L, H_in)``
              unbatched).
            - ``lengths``: ``(N,)``.
            - return: ``(N, L, C)`` (``(L, N, C)`` if not ``batch_first``; ``(L, C)``
              unbatched).

        Raises:
            rnnkit.errors.ShapeError: ``x`` or ``lengths`` break the shape contract.
        """
        output, lb, batched = self._top_outputs(x, lengths)
        logits = zero_padded_steps(self.head(output), lb)
        return self.encoder.output_from_batch_major(logits, batched)

    def predict_proba(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Class probabilities at every step, in eval mode and without autograd.

        The model's train/eval mode is restored afterwards. ``x`` is in the model's units.

        Args:
            x: The input sequences, as for :meth:`forward`.
            lengths: The valid lengths, as for :meth:`forward`.

        Returns:
            Probabilities summing to 1 over the classes at every step (uniform at padded
            steps, whose logits are zero).

        Shapes:
            - return: ``(N, L, C)`` in ``x``'s layout (``(L, C)`` unbatched).
        """
        with evaluating(self):
            logits: Tensor = self(x, lengths)
            return logits.softmax(dim=-1)

    def predict(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The most likely class at every step, in eval mode and without autograd.

        ``x`` is in the model's units; :meth:`predict_labels` takes raw data.

        Args:
            x: The input sequences, as for :meth:`forward`.
            lengths: The valid lengths, as for :meth:`forward`.

        Returns:
            Class indices (int64); ignore the padded steps (beyond ``lengths``).

        Shapes:
            - return: ``(N, L)`` (``(L, N)`` if not ``batch_first``; ``(L,)`` unbatched).
        """
        with evaluating(self):
            logits: Tensor = self(x, lengths)
            return logits.argmax(dim=-1)

    def predict_labels(self, x: Tensor, lengths: Tensor | None = None) -> Any:
        """The most likely original label at every step, from raw inputs.

        Standardises ``x`` with the model's
        :attr:`~rnnkit.models.base.RecurrentModel.input_scaler` (when set), predicts,
        and maps the class indices to its :attr:`~rnnkit.models.base.RecurrentModel.classes`,
        also after :func:`~rnnkit.load_model`. Padded steps (beyond ``lengths``) get a label
        too; ignore them.

        Args:
            x: The input sequences in the units of the raw training data.
            lengths: The valid lengths, as for :meth:`forward`.

        Returns:
            A :class:`numpy.ndarray` of labels.

        Raises:
            ValueError: The model has no :attr:`~rnnkit.models.base.RecurrentModel.classes`.
            rnnkit.errors.ShapeError: ``x`` or ``lengths`` break the shape contract.

        Shapes:
            - return: ``(N, L)`` (``(L, N)`` if not ``batch_first``; ``(L,)`` unbatched).
        """
        classes = self._require_classes()
        return decode_labels(self.predict(self._model_inputs(x), lengths), classes)

    def _step_output(self, top: Tensor) -> Tensor:
        logits: Tensor = self.head(top)
        return logits

    def extra_repr(self) -> str:
        """Show the data flow with the sizes filled in."""
        spec = self.spec
        lead = "N, L" if spec.batch_first else "L, N"
        width = spec.D * spec.output_size
        return (
            f"x ({lead}, H_in) = ({lead}, {spec.input_size}) -> output ({lead}, D·H_out) = "
            f"({lead}, {width}) -> logits ({lead}, C) = ({lead}, {self.num_classes})"
        )
