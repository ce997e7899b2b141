"""The tutorial, step 4: checkpoints, an interrupted run resumed, the best model loaded."""

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR

import rnnkit

torch.manual_seed(0)
x = torch.randn(1024, 20, 4)
y = (x[:, :, 0].sum(dim=1) > 0).long()
train, test = (x[:768], y[:768]), (x[768:], y[768:])


def make_trainer(max_epochs: int, checkpoint: rnnkit.ModelCheckpoint) -> rnnkit.Trainer:
    """The same Trainer each time: 10 epochs of cosine decay, stopped after ``max_epochs``."""
    return rnnkit.Trainer(
        max_epochs=max_epochs,
        batch_size=64,
        lr=1e-2,
        scheduler=lambda optimizer: CosineAnnealingLR(optimizer, T_max=10),
        seed=0,
        progress=False,
        callbacks=[checkpoint],
    )


# A run of 10 epochs that stops after 4 (as if the machine had gone down) ...
model = rnnkit.SequenceClassifier(input_size=4, num_classes=2, hidden_size=32)
checkpoint = rnnkit.ModelCheckpoint("checkpoints", monitor="val_accuracy")
make_trainer(4, checkpoint).fit(model, train, val=test)
# ... continues from its last checkpoint exactly where it stopped.
model = rnnkit.SequenceClassifier(input_size=4, num_classes=2, hidden_size=32)
checkpoint = rnnkit.ModelCheckpoint("checkpoints", monitor="val_accuracy")
history = make_trainer(10, checkpoint).fit(model, train, val=test, resume_from="last")
print(len(history), "epochs in the history")
assert checkpoint.best_path is not None
assert checkpoint.best_score is not None
print("best:", checkpoint.best_path.name, f"val_accuracy={checkpoint.best_score:.3f}")
best = rnnkit.load_model(checkpoint.best_path)  # the model class and config come from the file
print(type(best).__name__, best(x[:3]).shape)
