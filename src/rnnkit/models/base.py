"""What every rnnkit model shares: its encoder, config, contract and rebuild-from-config."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from typing_extensions import Self

from rnnkit.models.config import ModelConfig
from rnnkit.models.encoder import RecurrentEncoder, valid_mask
from rnnkit.shapes import RecurrentSpec

__all__ = ["RecurrentModel", "unwrap_model"]


class RecurrentModel(nn.Module):
    """Base class of the rnnkit models: a :class:`rnnkit.RecurrentEncoder` and a head.

    Subclasses set :attr:`config_class`, build ``self.encoder`` and store ``self.config``.

    Attributes:
        config: The options the model was built with (see :mod:`rnnkit.models.config`).
        encoder: The recurrent layers.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    config: ModelConfig
    encoder: RecurrentEncoder

    @property
    def spec(self) -> RecurrentSpec:
        """The shape contract every call is validated against."""
        return self.encoder.spec

    @property
    def batch_first(self) -> bool:
        """Whether inputs and outputs are laid out ``(N, L, ·)`` (rnnkit's default)."""
        return self.encoder.spec.batch_first

    @classmethod
    def from_config(cls, config: ModelConfig | Mapping[str, Any]) -> Self:
        """Build a fresh model (new random weights) from a config or its ``to_dict()``.

        Load weights afterwards with :meth:`torch.nn.Module.load_state_dict`.

        Args:
            config: A config of this model's :attr:`config_class`, or a mapping as
                ``config.to_dict()`` returns it (the ``"model"`` key, if present, must name
                this class).

        Returns:
            The model.

        Raises:
            TypeError: ``config`` is another model's config.
            ValueError: The mapping names another model or has unknown or missing keys.
        """
        if isinstance(config, Mapping):
            config = cls.config_class.from_dict(config)
        if type(config) is not cls.config_class:
            raise TypeError(
                f"Expected `config` to be a {cls.config_class.__name__} or a mapping, but got "
                f"{type(config).__name__}."
            )
        return cls(**config.kwargs())

    def _top_outputs(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None, bool]:
        """Validate a call from zero state and run the encoder in its internal layout.

        Returns:
            ``(output, lengths, batched)``: the top layer's outputs, batched and batch-first
            (zero at padded steps; possibly the kernel's saved buffer, so never modify it in
            place), the lengths, and whether the user's ``x`` was batched.

        Shapes:
            - ``x``: the user's layout; ``output``: ``(N, L, D·H_out)``.
        """
        encoder = self.encoder
        batched = encoder.validate(x, None, lengths)
        xb, _, lb = encoder.to_batch_major(x, None, lengths, batched)
        return encoder.run_outputs(xb, None, lb), lb, batched


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Run a block in eval mode without autograd, then restore the module's mode.

    Args:
        module: The model to switch.

    Yields:
        Nothing; the block runs with dropout off and gradients disabled.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def zero_padded_steps(values: Tensor, lengths: Tensor | None) -> Tensor:
    """Return per-step values with every padded step set to zero (a new tensor if any is).

    Args:
        values: Per-step values, batch-first.
        lengths: Each sequence's valid length, or ``None`` (nothing is padded).

    Returns:
        ``values``, or a copy that is zero beyond each sequence's length.

    Shapes:
        - ``values``: ``(N, L, F)``; ``lengths``: ``(N,)``.
    """
    steps = values.shape[1]
    if lengths is None or int(lengths.min()) >= steps:
        return values
    mask = valid_mask(lengths, steps, device=values.device)
    return values.masked_fill(~mask.unsqueeze(-1), 0.0)


def check_num_classes(num_classes: object) -> None:
    """Raise unless ``num_classes`` is an int >= 1.

    Raises:
        TypeError: Not an int.
        ValueError: Below 1.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"Expected `num_classes` to be an int, but got {num_classes!r}.")
    if num_classes < 1:
        raise ValueError(f"Expected `num_classes` >= 1, but got {num_classes}.")


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the user's model inside any wrappers around it.

    Unwraps :class:`torch.nn.DataParallel`, :class:`~torch.nn.parallel.DistributedDataParallel`,
    ``torch.compile``'s module and rnnkit's own DDP wrapper, however they are nested.

    Args:
        model: A model, wrapped or not.

    Returns:
        The innermost model (``model`` itself when it is not wrapped).
    """
    while (inner := _wrapped(model)) is not None:
        model = inner
    return model


def _wrapped(model: nn.Module) -> nn.Module | None:
    """The module ``model`` wraps, or ``None`` when it wraps none."""
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        module: nn.Module = model.module
        return module
    # torch.compile's OptimizedModule keeps the original in `_orig_mod`; rnnkit's wrappers
    # declare `_rnnkit_wrapper = True` and keep theirs in `model`.
    inner = getattr(model, "model", None) if getattr(model, "_rnnkit_wrapper", False) else None
    inner = getattr(model, "_orig_mod", inner)
    return inner if isinstance(inner, nn.Module) else None
