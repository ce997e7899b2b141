"""What must match before a run resumes: its training data and its optimizer.

A checkpoint is resumed only into the run that wrote it. The model is checked by
:func:`rnnkit.io.checkpoint.check_compatible`; this module checks the rest, before the model
or the optimizer is touched:

- the training data, by a *signature* saved in the run state: the number of samples (or
  batches), the input width, the sequence length, the kind of targets, the number of classes
  and a fingerprint of a few evenly spaced samples;
- the optimizer: its class, its parameter groups and their hyperparameter names. The
  checkpoint's hyperparameter *values* (the learning rate among them) win, as exact resume
  requires; a Trainer that asks for other values is warned, naming both.
"""

from __future__ import annotations

import hashlib
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from rnnkit.errors import CheckpointError, CheckpointMismatchError
from rnnkit.training._batches import BatchSource, IndexedSource

__all__ = ["check_data", "check_optimizer_state", "data_signature"]

FINGERPRINT_SAMPLES = 16
"""Evenly spaced samples hashed into the data fingerprint (cheap for any data size)."""

_FLAGS = frozenset({"params", "initial_lr", "fused", "foreach", "capturable", "differentiable"})
"""Group keys that are not hyperparameters the user chose (or are set by torch itself)."""

_HINT_NEW_RUN = (
    "Hint: resume with the same {what} as the run that wrote it; to start a new run from its "
    "weights, load them with rnnkit.load_model(path) and call fit without resume_from."
)


def _bytes_of(t: Tensor) -> bytes:
    flat = t.detach().cpu().contiguous().flatten()
    return flat.view(torch.uint8).numpy().tobytes()


def _fingerprint(source: IndexedSource) -> str:
    n = source.num_samples
    if n == 0:
        return ""
    picks = torch.unique(torch.linspace(0, n - 1, min(n, FINGERPRINT_SAMPLES)).round().long())
    digest = hashlib.sha256()
    for part in source.dataset.batch(picks):
        if part is not None:
            digest.update(str(tuple(part.shape)).encode())
            digest.update(_bytes_of(part))
    return digest.hexdigest()[:16]


def data_signature(source: BatchSource) -> dict[str, Any]:
    """The signature of the training data saved with the run (plain values only).

    Indexed data (a dataset, tensors, arrays) give their sizes and a fingerprint of
    :data:`FINGERPRINT_SAMPLES` evenly spaced samples; a DataLoader or another iterable gives
    its number of batches when it has one (it is never iterated for this).
    """
    if not isinstance(source, IndexedSource):
        return {"num_batches": source.num_batches(1)}
    data = source.dataset
    return {
        "num_samples": source.num_samples,
        "input_size": data.input_size,
        "seq_len": data.seq_len,
        "target_kind": data.target_kind,
        "num_classes": data.num_classes,
        "fingerprint": _fingerprint(source),
    }


def check_data(saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> None:
    """Refuse to resume on other training data than the checkpoint's run trained on.

    Args:
        saved: The signature in the checkpoint (``None`` for a checkpoint without one).
        current: :func:`data_signature` of this run's training data.

    Raises:
        rnnkit.errors.CheckpointMismatchError: A field differs (each one named with both
            values).
    """
    if saved is None:
        return
    diffs = [
        f"{key}: checkpoint {saved.get(key)!r}, this run {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
    if diffs:
        raise CheckpointMismatchError(
            "Expected the training data of the run that wrote the checkpoint, but the data "
            f"differ ({'; '.join(diffs)}). " + _HINT_NEW_RUN.format(what="training data")
        )


def _group_hyperparameters(group: Mapping[str, Any]) -> dict[str, Any]:
    values = {key: value for key, value in group.items() if key not in _FLAGS}
    values["lr"] = group.get("initial_lr", group.get("lr"))  # the chosen rate, not the decayed
    return values


def _check_groups(saved: list[Mapping[str, Any]], fresh: list[Mapping[str, Any]]) -> None:
    if len(saved) != len(fresh):
        raise CheckpointMismatchError(
            f"Expected an optimizer with {len(saved)} parameter group(s) to resume the "
            f"checkpoint, but this run's has {len(fresh)}. "
            + _HINT_NEW_RUN.format(what="configure_optimizer")
        )
    for index, (old, new) in enumerate(zip(saved, fresh, strict=True)):
        if len(old["params"]) != len(new["params"]):
            raise CheckpointMismatchError(
                f"Expected parameter group {index} to hold {len(old['params'])} parameters "
                f"to resume the checkpoint, but it holds {len(new['params'])}. "
                + _HINT_NEW_RUN.format(what="optimizer")
            )
        missing = sorted(set(old) - set(new) - _FLAGS)
        extra = sorted(set(new) - set(old) - _FLAGS)
        if missing or extra:
            raise CheckpointMismatchError(
                "Expected the optimizer of the run that wrote the checkpoint, but this run's "
                f"optimizer lacks the settings {missing} and has {extra} that the saved one "
                "does not, i.e. it is another kind of optimizer. "
                + _HINT_NEW_RUN.format(what="optimizer")
            )


def check_optimizer_state(state: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Refuse another optimizer; warn when the Trainer asks for other hyperparameters.

    Call it before the model or the optimizer take anything from the checkpoint. The saved
    values (the learning rate among them) are the ones a resumed run uses.

    Raises:
        rnnkit.errors.CheckpointMismatchError: Another optimizer class, another number of
            parameter groups or of parameters in a group, or other hyperparameter names.
    """
    saved_state = state.get("optimizer")
    if saved_state is None:
        return
    saved_class = state.get("optimizer_class")
    name = type(optimizer).__name__
    if saved_class is not None and saved_class != name:
        raise CheckpointMismatchError(
            f"Expected the optimizer class {saved_class} to resume the checkpoint, but this "
            f"run builds {name}. " + _HINT_NEW_RUN.format(what="optimizer")
        )
    saved_groups, fresh = saved_state["param_groups"], optimizer.state_dict()["param_groups"]
    _check_groups(saved_groups, fresh)
    _check_hyperparameters(saved_groups, fresh)


def _kind(value: object) -> str:
    """A hyperparameter's kind: the checkpoint's value must be of the fresh one's."""
    if isinstance(value, numbers.Real) or (isinstance(value, Tensor) and value.numel() == 1):
        return "number"  # bools too: nesterov=1 and nesterov=True are one setting
    if isinstance(value, tuple | list):
        return f"{len(value)} values"
    return type(value).__name__


def _check_hyperparameters(saved: list[Mapping[str, Any]], fresh: list[Mapping[str, Any]]) -> None:
    """Refuse a saved setting of another kind than this run's (damage); warn on a changed one."""
    for index, (old, new) in enumerate(zip(saved, fresh, strict=True)):
        before, now = _group_hyperparameters(old), _group_hyperparameters(new)
        for key in before:
            # unset on this side, or saved unset where this run's is no number (line_search_fn)
            unset = now[key] is None or (before[key] is None and _kind(now[key]) != "number")
            if not unset and _kind(before[key]) != _kind(now[key]):
                raise CheckpointError(
                    f"Expected the checkpoint's optimizer setting {key!r} in parameter group "
                    f"{index} to be a {_kind(now[key])}, as this run's is, but it is "
                    f"{before[key]!r}. Hint: the checkpoint is damaged; resume from another."
                )
        diffs = [f"{k}={before[k]!r} (this run: {now[k]!r})" for k in before if before[k] != now[k]]
        if diffs:
            warnings.warn(
                f"Resuming with the checkpoint's optimizer settings {', '.join(diffs)} in "
                f"parameter group {index}: the Trainer's are not used, so the run continues "
                "exactly. To train with other settings, start a new run from the weights "
                "(rnnkit.load_model(path), then fit without resume_from).",
                UserWarning,
                stacklevel=6,
            )
