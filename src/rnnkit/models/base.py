"""What every rnnkit model shares: its encoder, config, contract and rebuild-from-config."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn
from typing_extensions import Self

from rnnkit.models.config import ModelConfig
from rnnkit.models.encoder import RecurrentEncoder
from rnnkit.shapes import RecurrentSpec

__all__ = ["RecurrentModel"]


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
