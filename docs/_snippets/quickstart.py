"""The README's quick start: MNIST read row by row with a GRU (see docs/quickstart.rst)."""

from torch.optim.lr_scheduler import CosineAnnealingLR
from torchvision.datasets import MNIST

import rnnkit
from rnnkit.data import image_sequences

train = image_sequences(MNIST("data", train=True, download=True), normalize="mnist")
test = image_sequences(MNIST("data", train=False, download=True), normalize="mnist")
model = rnnkit.SequenceClassifier(input_size=28, num_classes=10, hidden_size=128, cell="gru")
epochs = 5
trainer = rnnkit.Trainer(
    max_epochs=epochs,
    batch_size=128,
    lr=1e-3,
    scheduler=lambda optimizer: CosineAnnealingLR(optimizer, T_max=epochs),  # decays to 0
    seed=0,
)
history = trainer.fit(model, train, val=test)  # per-epoch loss and accuracy, train and val
print(trainer.evaluate(model, test))  # {'loss': ..., 'accuracy': ...}
history.plot(["accuracy", "val_accuracy"], path="accuracy.png")
print(model.spec.describe(128, 28))  # each tensor's layout, in symbols and numbers
