"""The tutorial, step 1: a tutorial-style training loop in plain PyTorch (docs/tutorial.rst)."""

import torch
from torch import nn

torch.manual_seed(0)
# 1,024 sequences of 20 steps with 4 features; the label says whether feature 0 sums above 0.
x = torch.randn(1024, 20, 4)
y = (x[:, :, 0].sum(dim=1) > 0).long()
x_train, y_train, x_test, y_test = x[:768], y[:768], x[768:], y[768:]


class RNN(nn.Module):
    """An RNN classifier as tutorials write it."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(4, 32, batch_first=True)
        self.linear = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2) from the last step's output."""
        h0 = torch.zeros(1, x.size(0), 32)
        out, _ = self.rnn(x, h0)  # out: (N, L, 32), the top layer's output at every step
        logits: torch.Tensor = self.linear(out[:, -1, :])
        return logits


model = RNN()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_f = nn.CrossEntropyLoss()
for epoch in range(5):
    for i in torch.split(torch.randperm(768), 64):
        loss = loss_f(model(x_train[i]), y_train[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"epoch {epoch + 1}: test accuracy {accuracy:.3f}")
