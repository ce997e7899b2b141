"""Ship a trained model: ONNX files and :func:`torch.export.export` programs, state explicit.

* :func:`to_onnx` writes an ONNX file (and a JSON sidecar describing it) that runs in
  onnxruntime or any other ONNX runtime, for every batch size and sequence length;
* :func:`to_torch_export` returns a :class:`torch.export.ExportedProgram`.

Both take ``mode="sequence"`` (whole, optionally right-padded sequences, optionally from a
given state; returns the model's outputs and the final state) or ``mode="step"`` (one time
step, the state an explicit input and output: streaming inference and generation outside
Python). The exported graphs compute the model in eval mode. See :doc:`/deploying`.

ONNX export needs the ``onnx`` package: ``pip install onnx onnxruntime`` (rnnkit's ``export``
extra).

This layer may import ``rnnkit.models`` and the layers below; never the tasks, the
callbacks or the Trainer.
"""

from __future__ import annotations

from pathlib import Path

from torch.export import ExportedProgram

from rnnkit.export._checks import check_exportable, check_streamable
from rnnkit.export._sidecar import sidecar_path
from rnnkit.export._signature import MODES, ExportMode, TensorSignature, inputs_of, outputs_of
from rnnkit.models import RecurrentModel

__all__ = [
    "MODES",
    "ExportMode",
    "TensorSignature",
    "check_streamable",
    "inputs_of",
    "outputs_of",
    "sidecar_path",
    "to_onnx",
    "to_torch_export",
]


def to_onnx(
    model: RecurrentModel,
    path: str | Path,
    *,
    mode: ExportMode = "sequence",
    lengths: bool = True,
    initial_state: bool = True,
) -> Path:
    """Write `model` as an ONNX file, and a JSON sidecar (``path + ".json"``) describing it.

    The batch size ``N`` and (in sequence mode) the length ``L`` are dynamic: one file runs
    every batch. The graph computes the model in eval mode (no dropout), in the model's
    units: the sidecar's ``"data"`` holds the model's ``classes``, ``input_scaler`` and
    ``target_scaler`` (``null`` where unset) for mapping raw inputs and outputs (see
    :doc:`/deploying`).

    Sequence mode (``mode="sequence"``):
        Inputs ``x`` ``(N, L, H_in)`` (``(L, N, H_in)`` if not ``batch_first``), then, as
        chosen, ``lengths`` ``(N,)`` int64 (each in ``1..L``, for right-padded batches) and the
        initial state ``h0`` ``(D·num_layers, N, H_out)`` (and ``c0``
        ``(D·num_layers, N, H_cell)`` for an LSTM). Outputs: the model's result (``logits``
        ``(N, C)`` for a :class:`~rnnkit.SequenceClassifier`, ``y`` ``(N, L, H_y)`` for a
        :class:`~rnnkit.Seq2SeqRegressor`, ``logits`` ``(N, L, C)`` for a
        :class:`~rnnkit.SequenceTagger`, zero at padded steps), then ``h_n`` (and ``c_n``),
        each sequence's state at its last valid step.

    Step mode (``mode="step"``, unidirectional models only):
        Inputs ``x_t`` ``(N, H_in)``, ``h`` ``(num_layers, N, H_out)`` (and ``c``); outputs
        ``logits`` ``(N, C)`` or ``y_t`` ``(N, H_y)``, then ``h_next`` (and ``c_next``). Feed
        zeros as the first state.

    Args:
        model: A trained :class:`~rnnkit.SequenceClassifier`, :class:`~rnnkit.Seq2SeqRegressor`
            or :class:`~rnnkit.SequenceTagger` (float32; an LSTM without ``proj_size``).
        path: Where to write the ``.onnx`` file.
        mode: ``"sequence"`` or ``"step"``.
        lengths: Sequence mode: give the graph a ``lengths`` input.
        initial_state: Sequence mode: give the graph ``h0`` (and ``c0``) inputs; without
            them the state starts at zero.

    Returns:
        The path of the ONNX file.

    Raises:
        ImportError: The ``onnx`` package is not installed.
        TypeError: `model` is not an rnnkit model that can be exported.
        ValueError: The model has an option ONNX cannot express (``proj_size``, a dtype other
            than float32), or ``mode="step"`` for a model that cannot stream.
    """
    check_exportable(model, mode, onnx=True)
    try:
        from rnnkit.export._onnx import write_onnx
    except ModuleNotFoundError as error:
        raise ImportError(
            f"ONNX export needs the `{error.name}` package. Hint: pip install onnx onnxruntime "
            "(rnnkit's `export` extra)."
        ) from error
    return write_onnx(model, path, mode, lengths=lengths, initial_state=initial_state)


def to_torch_export(
    model: RecurrentModel,
    *,
    mode: ExportMode = "sequence",
    lengths: bool = True,
    initial_state: bool = True,
) -> ExportedProgram:
    """Export `model` with :func:`torch.export.export`, its state an explicit input and output.

    The program takes keyword arguments with the names and layouts :func:`to_onnx` documents
    (``x``, ``lengths``, ``h0``, ``c0``; in step mode ``x_t``, ``h``, ``c``) and returns the
    same outputs as a tuple. ``N`` and (in sequence mode) ``L`` are dynamic. It computes the
    model in eval mode through the cell equations (see :doc:`/deploying`); LSTM projections
    (``proj_size``) and float64 models are supported. Save it with :func:`torch.export.save`.
    The program holds the model's parameters, not a copy: export ``copy.deepcopy(model)``
    when training goes on.

    Args:
        model: A :class:`~rnnkit.SequenceClassifier`, :class:`~rnnkit.Seq2SeqRegressor` or
            :class:`~rnnkit.SequenceTagger`.
        mode: ``"sequence"`` or ``"step"``.
        lengths: Sequence mode: take a ``lengths`` argument.
        initial_state: Sequence mode: take ``h0`` (and ``c0``) arguments.

    Returns:
        The exported program; call ``program.module()(x=..., lengths=...)``.

    Raises:
        TypeError: `model` is not an rnnkit model that can be exported.
        ValueError: ``mode="step"`` for a model that cannot stream, or an unknown `mode`.
    """
    from rnnkit.export._torch import export_program

    return export_program(model, mode, lengths=lengths, initial_state=initial_state)
