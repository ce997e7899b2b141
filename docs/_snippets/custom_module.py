"""Train your own module with rnnkit's Trainer (see docs/training.rst)."""

import torch
from torch import Tensor, nn

from rnnkit import Trainer
from rnnkit.tasks import ClassificationTask


class GRUClassifier(nn.Module):
    """A GRU read out by a linear layer on its last hidden state: (N, L, H_in) -> (N, C)."""

    def __init__(self, input_size: int, num_classes: int, hidden_size: int) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, C) for the sequences x (N, L, H_in)."""
        _, h_n = self.gru(x)  # h_n: (num_layers, N, H_out)
        logits: Tensor = self.head(h_n[-1])  # (N, C)
        return logits


x = torch.randn(512, 8, 3)  # 512 sequences of 8 steps, 3 features
y = (x[:, :, 0].sum(dim=1) > 0).long()  # label: is the first feature's sum positive?
train, test = (x[:384], y[:384]), (x[384:], y[384:])

model = GRUClassifier(input_size=3, num_classes=2, hidden_size=16)
trainer = Trainer(max_epochs=8, batch_size=32, lr=1e-2, seed=0, task=ClassificationTask())
history = trainer.fit(model, train, val=test)  # cross-entropy; accuracy as the metric
print(trainer.evaluate(model, test))  # {'loss': ..., 'accuracy': ...}
print(trainer.predict(model, test[0]).shape)  # logits: torch.Size([128, 2])
