"""A callback that writes each epoch's worst batch loss into the History (docs/callbacks.rst)."""

from typing import Any

import torch

from rnnkit import SequenceClassifier, Trainer
from rnnkit.callbacks import Callback


class WorstBatchLoss(Callback):
    """Record ``"worst_batch_loss"``: the highest mean loss of any training batch."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Start the epoch's maximum at zero, on the device the losses are on."""
        self.worst = torch.zeros((), device=trainer.device)

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        """Keep the larger of the maximum so far and this batch's loss."""
        self.worst = torch.maximum(self.worst, outputs["loss"].detach())  # stays on the device

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Write the epoch's maximum into its logs (and so into the History)."""
        logs["worst_batch_loss"] = self.worst.item()  # one host sync per epoch, not per step


x = torch.randn(256, 10, 3)
y = (x[:, :, 0].mean(dim=1) > 0).long()
trainer = Trainer(max_epochs=3, batch_size=32, seed=0, callbacks=[WorstBatchLoss()])
history = trainer.fit(SequenceClassifier(3, 2, 16), (x, y))
print([round(value, 3) for value in history["worst_batch_loss"]])
