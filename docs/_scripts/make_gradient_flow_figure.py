"""Render ``docs/_static/gradient_flow.png``: ||dL/dh_t|| over 200 steps for three models.

A tanh RNN, an LSTM at torch's default initialisation and an LSTM whose forget gates are open
(forget-gate bias 5), all with 16 units, measured with
:func:`rnnkit.callbacks.measure_gradient_flow` on one batch of random inputs whose class is
the sign of the first step. Run: ``python docs/_scripts/make_gradient_flow_figure.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rnnkit import SequenceClassifier
from rnnkit.callbacks import measure_gradient_flow

OUT = Path(__file__).resolve().parents[1] / "_static" / "gradient_flow.png"
HIDDEN, STEPS = 16, 200


def _model(cell: str, forget_bias: float | None = None) -> SequenceClassifier:
    torch.manual_seed(0)
    model = SequenceClassifier(3, 2, HIDDEN, cell=cell)  # type: ignore[arg-type]
    if forget_bias is not None:
        with torch.no_grad():
            model.encoder.rnn.get_parameter("bias_ih_l0")[HIDDEN : 2 * HIDDEN] = forget_bias
    return model


def main() -> None:
    """Measure the three models and save the figure."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, STEPS, 3, generator=gen)
    y = (x[:, 0, 0] > 0).long()
    models = {
        "tanh RNN": _model("rnn"),
        "LSTM, default init": _model("lstm"),
        "LSTM, forget-gate bias 5": _model("lstm", 5.0),
    }
    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, model in models.items():
        norms, _ = measure_gradient_flow(model, x, y)
        axes.plot(range(STEPS), [n if n > 0 else float("nan") for n in norms], label=label)
    axes.set_yscale("log")
    axes.set_xlabel("time step t")
    axes.set_ylabel("‖∂L/∂h_t‖")
    axes.grid(visible=True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(OUT, format="png")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
