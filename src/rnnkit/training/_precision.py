"""Numeric precision for the Trainer: autocast regions and the gradient scaler.

Three settings, named as in Lightning:

- ``"32"``: plain float32, no autocast.
- ``"bf16-mixed"``: the forward pass and loss run under :func:`torch.autocast` with bfloat16;
  the weights, gradients and optimizer state stay float32. bfloat16 has float32's range, so no
  loss scaling is needed. Works on CUDA and CPU (an LSTM on a CPU only where torch's build
  runs it in bfloat16; refused before training otherwise).
- ``"16-mixed"``: autocast with float16 plus a :class:`torch.amp.GradScaler` that scales the
  loss so small gradients do not underflow, and skips the optimizer steps whose gradients
  overflow. CUDA only.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["PRECISIONS", "Precision", "PrecisionName", "resolve_precision"]

PrecisionName = Literal["32", "bf16-mixed", "16-mixed"]
PRECISIONS: tuple[PrecisionName, ...] = ("32", "bf16-mixed", "16-mixed")
_DTYPES: dict[str, torch.dtype] = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def resolve_precision(name: object) -> PrecisionName:
    """Check a precision name (``32`` as an int is accepted too) and return it as a string.

    Raises:
        ValueError: If the name is not one of :data:`PRECISIONS`.
    """
    text = str(name) if isinstance(name, int | str) else repr(name)
    if text not in PRECISIONS:
        raise ValueError(
            f"Expected `precision` to be one of {list(PRECISIONS)}, but got {name!r}. "
            "Hint: 'bf16-mixed' speeds up training on recent GPUs and CPUs; '16-mixed' needs CUDA."
        )
    return text


@dataclass(frozen=True)
class Precision:
    """A precision setting bound to a device.

    Args:
        name: One of :data:`PRECISIONS`.
        device: The device the model runs on.

    Raises:
        ValueError: If ``"16-mixed"`` is asked for on a device other than CUDA.
    """

    name: PrecisionName
    device: torch.device

    def __post_init__(self) -> None:
        if self.name == "16-mixed" and self.device.type != "cuda":
            raise ValueError(
                f"Expected a CUDA device for precision='16-mixed', but the Trainer runs on "
                f"{self.device}. Hint: use precision='bf16-mixed' on the CPU, or '32'."
            )

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or ``None`` for plain float32."""
        return _DTYPES.get(self.name)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """A context in which the forward pass and the loss run (a no-op for ``"32"``)."""
        dtype = self.dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def check_model(self, model: torch.nn.Module) -> None:
        """Refuse an LSTM under ``"bf16-mixed"`` on a CPU whose torch build cannot run it.

        Raises:
            ValueError: torch's CPU LSTM fails under bfloat16 autocast on this machine.
        """
        if self.name != "bf16-mixed" or self.device.type != "cpu":
            return
        # torch runs a projected LSTM without oneDNN, so only plain ones are at risk
        lstm = any(isinstance(m, torch.nn.LSTM) and not m.proj_size for m in model.modules())
        if lstm and not _cpu_bf16_lstm_runs():
            raise ValueError(
                "Expected a CPU that runs torch's LSTM in bfloat16 for precision='bf16-mixed', "
                "but this one fails (its oneDNN library has no bfloat16 LSTM kernel here). "
                "Hint: use precision='32', or a GRU or RNN cell."
            )

    def make_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for ``"16-mixed"`` (a pass-through otherwise)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "16-mixed")


@functools.cache
def _cpu_bf16_lstm_runs() -> bool:
    """Whether torch's CPU LSTM runs under bfloat16 autocast here (a tiny probe, once)."""
    try:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16), torch.no_grad():
            torch.nn.LSTM(2, 2)(torch.zeros(1, 1, 2))
    except RuntimeError:
        return False
    return True
