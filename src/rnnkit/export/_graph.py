"""A small builder for ONNX graphs: nodes, constants and unique value names (private).

It wraps :mod:`onnx.helper` so the recurrent stack and the heads read as a sequence of
operator calls, ``g.op("MatMul", a, b)``, each returning the name of its (first) output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["OPSET", "GraphBuilder"]

OPSET = 18
"""The ONNX opset the exported files use (onnxruntime 1.16 and later run it)."""


class GraphBuilder:
    """Collects the nodes and constants of one ONNX graph."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        """A value name no other value of this graph has."""
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value: Any, stem: str = "const", dtype: Any = None) -> str:
        """Add a constant (an initializer) and return its name."""
        name = self.fresh(stem)
        array = np.asarray(value, dtype=dtype)
        self.initializers.append(numpy_helper.from_array(array, name=name))
        return name

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        """Add one node with one output; return the output's name."""
        return self.op_multi(op_type, *inputs, **attributes)[0]

    def op_multi(
        self,
        op_type: str,
        *inputs: str,
        outputs: int = 1,
        names: tuple[str, ...] = (),
        **attributes: Any,
    ) -> list[str]:
        """Add one node with `outputs` outputs (named `names` when given); return their names."""
        out = list(names) or [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), out, **attributes))
        return out

    def rename(self, value: str, name: str) -> str:
        """Give `value` a graph-output name (an Identity node)."""
        self.nodes.append(helper.make_node("Identity", [value], [name]))
        return name

    def model(
        self,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        name: str,
        doc: str,
    ) -> onnx.ModelProto:
        """Assemble and check the model."""
        graph = helper.make_graph(
            self.nodes, name, inputs, outputs, initializer=self.initializers, doc_string=doc
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="rnnkit",
        )
        model.ir_version = 8  # the oldest IR that opset 18 needs; older runtimes load it too
        onnx.checker.check_model(model, full_check=True)
        return model
