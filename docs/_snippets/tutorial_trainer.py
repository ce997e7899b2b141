"""The tutorial, step 2: the same model and data through rnnkit (docs/tutorial.rst)."""

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR

import rnnkit

torch.manual_seed(0)
x = torch.randn(1024, 20, 4)
y = (x[:, :, 0].sum(dim=1) > 0).long()
x_train, y_train, x_test, y_test = x[:768], y[:768], x[768:], y[768:]

model = rnnkit.SequenceClassifier(input_size=4, num_classes=2, hidden_size=32)
trainer = rnnkit.Trainer(
    max_epochs=5,
    batch_size=64,
    lr=1e-2,
    scheduler=lambda optimizer: CosineAnnealingLR(optimizer, T_max=5),
    seed=0,
    progress=False,
)
history = trainer.fit(model, (x_train, y_train), val=(x_test, y_test))
for record in history:
    print(f"epoch {record['epoch'] + 1}: test accuracy {record['val_accuracy']:.3f}")
print(trainer.evaluate(model, (x_test, y_test)))
