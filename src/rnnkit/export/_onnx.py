"""Write a trained model as an ONNX file built from ONNX's own recurrent operators (private).

The graph is written directly, operator by operator, from the model's weights: ONNX's
``RNN``/``LSTM``/``GRU`` operators take the batch size and the sequence length from their
input at run time, so one file serves every ``N`` and ``L``, and their ``sequence_lens``
input gives right-padded batches rnnkit's meaning. The heads (readouts, linear layers,
masking) are a handful of standard operators.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from rnnkit.export._checks import check_exportable
from rnnkit.export._graph import OPSET, GraphBuilder
from rnnkit.export._sidecar import sidecar, write_with_sidecar
from rnnkit.export._signature import ExportMode, TensorSignature, inputs_of, outputs_of
from rnnkit.export._stack import StackOutputs, add_stack
from rnnkit.models import RecurrentModel, Seq2SeqRegressor, SequenceClassifier, SequenceTagger

__all__ = ["build_onnx", "write_onnx"]

_DTYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}


def _value_info(tensor: TensorSignature) -> onnx.ValueInfoProto:
    dims = [
        size if size is not None else symbol
        for symbol, size in zip(tensor.symbols, tensor.sizes, strict=True)
    ]
    info = helper.make_tensor_value_info(tensor.name, _DTYPES[tensor.dtype], dims)
    info.doc_string = f"{tensor.layout}: {tensor.doc}"
    return info


def _linear(g: GraphBuilder, features: str, layer: object) -> str:
    """``features @ W.T + b`` for a :class:`torch.nn.Linear` over the last dimension."""
    weight = layer.weight.detach().cpu().numpy().astype(np.float32)  # type: ignore[attr-defined]
    bias = layer.bias.detach().cpu().numpy().astype(np.float32)  # type: ignore[attr-defined]
    product = g.op("MatMul", features, g.const(weight.T.copy(), "head_weight"))
    return g.op("Add", product, g.const(bias, "head_bias"))


def _valid_mask(g: GraphBuilder, output: str, lengths: str) -> str:
    """``True`` at valid steps, time-major ``(L, N, 1)``."""
    steps = g.op("Gather", g.op("Shape", output), g.const(0, "time_axis", np.int64), axis=0)
    positions = g.op("Range", g.const(0, "zero", np.int64), steps, g.const(1, "one", np.int64))
    column = g.op("Unsqueeze", positions, g.const([1], "axes", np.int64))
    row = g.op("Unsqueeze", lengths, g.const([0], "axes", np.int64))
    return g.op("Unsqueeze", g.op("Less", column, row), g.const([2], "axes", np.int64))


def _readout(
    g: GraphBuilder, model: SequenceClassifier, stack: StackOutputs, lengths: str | None
) -> str:
    """The classifier's readout features ``(N, D·H_out)`` from time-major outputs."""
    output = stack.output
    if model.readout == "last":
        per_sequence = g.op("Transpose", stack.top_h, perm=[1, 0, 2])
        width = model.spec.D * model.spec.output_size  # fixed: -1 fails for N = 0
        return g.op("Reshape", per_sequence, g.const([0, width], "shape", np.int64))
    if model.readout == "output_last":
        return g.op("Gather", output, g.const(-1, "last_step", np.int64), axis=0)
    axes = g.const([0], "axes", np.int64)
    if model.readout == "mean" and lengths is None:
        return g.op("ReduceMean", output, axes, keepdims=0)
    if model.readout == "mean":
        assert lengths is not None
        total = g.op("ReduceSum", output, axes, keepdims=0)
        count = g.op("Cast", lengths, to=TensorProto.FLOAT)
        return g.op("Div", total, g.op("Unsqueeze", count, g.const([1], "axes", np.int64)))
    if lengths is not None:
        floor = g.const(np.float32(-np.inf), "minus_inf")
        output = g.op("Where", _valid_mask(g, output, lengths), output, floor)
    return g.op("ReduceMax", output, axes, keepdims=0)


def _per_step(
    g: GraphBuilder, model: Seq2SeqRegressor | SequenceTagger, output: str, lengths: str | None
) -> str:
    """Every step's head output, time-major ``(L, N, H_y)`` or ``(L, N, C)``, zero at padding."""
    y = _linear(g, output, model.head)
    if lengths is None:
        return y
    return g.op("Where", _valid_mask(g, output, lengths), y, g.const(np.float32(0.0), "zero"))


def _sequence_graph(g: GraphBuilder, model: RecurrentModel, names: list[str]) -> list[str]:
    """Add the sequence-mode graph; `names` are its input names; return the result names."""
    x = "x" if not model.batch_first else g.op("Transpose", "x", perm=[1, 0, 2])
    lengths = "lengths" if "lengths" in names else None
    seq_lens = None if lengths is None else g.op("Cast", lengths, to=TensorProto.INT32)
    h0 = "h0" if "h0" in names else None
    c0 = "c0" if "c0" in names else None
    stack = add_stack(g, model.encoder, x, seq_lens, h0, c0)
    if isinstance(model, SequenceClassifier):
        first = _linear(g, _readout(g, model, stack, lengths), model.head)
    else:
        assert isinstance(model, Seq2SeqRegressor | SequenceTagger)
        first = _per_step(g, model, stack.output, lengths)
        if model.batch_first:
            first = g.op("Transpose", first, perm=[1, 0, 2])
    return [first, stack.h_n] + ([] if stack.c_n is None else [stack.c_n])


def _step_graph(g: GraphBuilder, model: RecurrentModel) -> list[str]:
    """Add the step-mode graph; return the result names."""
    x = g.op("Unsqueeze", "x_t", g.const([0], "axes", np.int64))
    c = "c" if model.spec.cell == "lstm" else None
    stack = add_stack(g, model.encoder, x, None, "h", c)
    top = g.op("Squeeze", stack.output, g.const([0], "axes", np.int64))
    first = _linear(g, top, model.head)
    return [first, stack.h_n] + ([] if stack.c_n is None else [stack.c_n])


def build_onnx(
    model: RecurrentModel, mode: ExportMode, *, lengths: bool, initial_state: bool
) -> tuple[onnx.ModelProto, list[TensorSignature], list[TensorSignature]]:
    """Build the ONNX model and its signature (see :func:`rnnkit.export.to_onnx`)."""
    check_exportable(model, mode, onnx=True)
    inputs = inputs_of(model, mode, lengths=lengths, initial_state=initial_state)
    outputs = outputs_of(model, mode)
    g = GraphBuilder()
    if mode == "step":
        results = _step_graph(g, model)
    else:
        results = _sequence_graph(g, model, [tensor.name for tensor in inputs])
    for value, tensor in zip(results, outputs, strict=True):
        g.rename(value, tensor.name)
    doc = f"rnnkit {type(model).__name__}, mode={mode!r}"
    proto = g.model(
        [_value_info(t) for t in inputs], [_value_info(t) for t in outputs], "rnnkit", doc
    )
    return proto, inputs, outputs


def write_onnx(
    model: RecurrentModel,
    path: str | Path,
    mode: ExportMode,
    *,
    lengths: bool,
    initial_state: bool,
) -> Path:
    """Build, save and describe the ONNX file; return its path."""
    proto, inputs, outputs = build_onnx(model, mode, lengths=lengths, initial_state=initial_state)
    content = sidecar(model, mode, inputs, outputs, exporter="onnx", opset=OPSET)
    return write_with_sidecar(path, proto.SerializeToString(), content)
