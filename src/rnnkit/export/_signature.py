"""The names, layouts and dtypes of an exported model's inputs and outputs (private).

Both exporters and the JSON sidecar read them from here, so a file's signature is written
down once. Layouts use rnnkit's shape notation; ``N`` (and in sequence mode ``L``) is left
open, every other size is filled in from the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from rnnkit.models import RecurrentModel, Seq2SeqRegressor, SequenceClassifier, SequenceTagger

__all__ = [
    "MODES",
    "ExportMode",
    "TensorSignature",
    "check_model_and_mode",
    "inputs_of",
    "outputs_of",
]

ExportMode = Literal["sequence", "step"]
"""What an exported graph computes: a whole (padded) batch of sequences, or one time step."""

MODES: tuple[str, ...] = get_args(ExportMode)
"""Every accepted ``mode=``."""


@dataclass(frozen=True)
class TensorSignature:
    """One input or output of an exported graph.

    Attributes:
        name: The graph's name for it.
        symbols: Its layout, e.g. ``("N", "L", "H_in")``.
        sizes: The size of each dimension; ``None`` where it is dynamic (``N``, ``L``).
        dtype: ``"float32"`` or ``"int64"``.
        doc: What it holds.
    """

    name: str
    symbols: tuple[str, ...]
    sizes: tuple[int | None, ...]
    dtype: str
    doc: str

    @property
    def layout(self) -> str:
        """The layout in rnnkit's notation, e.g. ``"(N, L, H_in)"``."""
        return "(" + ", ".join(self.symbols) + ")"

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable description."""
        return {
            "name": self.name,
            "layout": self.layout,
            "shape": list(self.sizes),
            "dtype": self.dtype,
            "doc": self.doc,
        }


def _state(model: RecurrentModel, name: str, kind: str, doc: str) -> TensorSignature:
    spec = model.spec
    rows = spec.D * spec.num_layers
    if kind == "h":
        return TensorSignature(
            name, ("D·num_layers", "N", "H_out"), (rows, None, spec.output_size), "float32", doc
        )
    return TensorSignature(
        name, ("D·num_layers", "N", "H_cell"), (rows, None, spec.hidden_size), "float32", doc
    )


def _states(model: RecurrentModel, names: tuple[str, str], when: str) -> list[TensorSignature]:
    states = [_state(model, names[0], "h", f"the hidden state {when}")]
    if model.spec.cell == "lstm":
        states.append(_state(model, names[1], "c", f"the cell state {when}"))
    return states


def inputs_of(
    model: RecurrentModel, mode: ExportMode, *, lengths: bool, initial_state: bool
) -> list[TensorSignature]:
    """The graph inputs for `model` in `mode`.

    Raises:
        TypeError: `model` is not one of rnnkit's exportable models.
        ValueError: `mode` is unknown.
    """
    check_model_and_mode(model, mode)
    h_in = model.spec.input_size
    if mode == "step":
        x_t = TensorSignature("x_t", ("N", "H_in"), (None, h_in), "float32", "one step's input")
        return [x_t, *_states(model, ("h", "c"), "before this step")]
    symbols, sizes = (("N", "L", "H_in"), (None, None, h_in))
    if not model.batch_first:
        symbols, sizes = (("L", "N", "H_in"), (None, None, h_in))
    inputs = [TensorSignature("x", symbols, sizes, "float32", "the input sequences")]
    if lengths:
        doc = "each sequence's valid length, in 1..L (right-padded batches)"
        inputs.append(TensorSignature("lengths", ("N",), (None,), "int64", doc))
    if initial_state:
        inputs.extend(_states(model, ("h0", "c0"), "before the first step"))
    return inputs


def outputs_of(model: RecurrentModel, mode: ExportMode) -> list[TensorSignature]:
    """The graph outputs for `model` in `mode`.

    Raises:
        TypeError: `model` is not one of rnnkit's exportable models.
        ValueError: `mode` is unknown.
    """
    check_model_and_mode(model, mode)
    if isinstance(model, SequenceTagger):
        first = _tag_logits(model, mode)
    elif isinstance(model, SequenceClassifier):
        c = model.num_classes
        doc = "class scores after this step" if mode == "step" else "class scores"
        first = TensorSignature("logits", ("N", "C"), (None, c), "float32", doc)
    elif mode == "step":
        h_y = model.output_size if isinstance(model, Seq2SeqRegressor) else 0
        first = TensorSignature("y_t", ("N", "H_y"), (None, h_y), "float32", "this step's output")
    else:
        assert isinstance(model, Seq2SeqRegressor)
        symbols = ("N", "L", "H_y") if model.batch_first else ("L", "N", "H_y")
        sizes = (None, None, model.output_size)
        first = TensorSignature("y", symbols, sizes, "float32", "every step's output")
    if mode == "step":
        return [first, *_states(model, ("h_next", "c_next"), "after this step")]
    return [first, *_states(model, ("h_n", "c_n"), "at each sequence's last valid step")]


def check_model_and_mode(model: object, mode: object) -> None:
    """Refuse anything but an exportable rnnkit model, and an unknown `mode`."""
    if not isinstance(model, SequenceClassifier | Seq2SeqRegressor | SequenceTagger):
        raise TypeError(
            "Expected `model` to be a SequenceClassifier, a Seq2SeqRegressor or a "
            f"SequenceTagger, but got {type(model).__name__}."
        )
    if mode not in MODES:
        raise ValueError(f"Expected `mode` to be one of {MODES}, but got {mode!r}.")


def _tag_logits(model: SequenceTagger, mode: ExportMode) -> TensorSignature:
    """A tagger's first output: this step's class scores, or every step's."""
    c = model.num_classes
    if mode == "step":
        return TensorSignature("logits", ("N", "C"), (None, c), "float32", "this step's scores")
    symbols = ("N", "L", "C") if model.batch_first else ("L", "N", "C")
    return TensorSignature("logits", symbols, (None, None, c), "float32", "every step's scores")
