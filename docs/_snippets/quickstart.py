"""The README's quick start: MNIST read row by row with a GRU (see docs/quickstart.rst)."""

from torchvision.datasets import MNIST

import rnnkit
from rnnkit.data import image_sequences

train = image_sequences(MNIST("data", train=True, download=True), normalize="mnist")
test = image_sequences(MNIST("data", train=False, download=True), normalize="mnist")
model = rnnkit.SequenceClassifier(input_size=28, num_classes=10, hidden_size=128, cell="gru")
trainer = rnnkit.Trainer(max_epochs=5, batch_size=128, lr=1e-3, seed=0)
history = trainer.fit(model, train, val=test)  # per-epoch loss and accuracy, train and val
print(trainer.evaluate(model, test))  # {'loss': ..., 'accuracy': ...}
history.plot(["accuracy", "val_accuracy"], path="accuracy.png")
print(model.spec.describe(128, 28))  # each tensor's layout, in symbols and numbers
