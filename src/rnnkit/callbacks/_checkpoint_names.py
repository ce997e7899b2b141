"""File names of :class:`~rnnkit.ModelCheckpoint`: the template, filled and made unique.

The template is checked when the callback is made (syntax, field names, format specs, that
it yields a plain file name); a name that is taken gets a ``-v1``, ``-v2``, ... suffix, so a
kept file is never overwritten by a later epoch whose name happens to be the same.
"""

from __future__ import annotations

import itertools
import os
import string
from collections.abc import Collection, Mapping
from pathlib import Path

from rnnkit.io.run_folder import LAST_NAME

__all__ = ["check_template", "fill_template", "log_fields", "unique_name"]

_INT_FIELDS = ("epoch", "step")
_EXAMPLE = "Hint: e.g. 'epoch={epoch:03d}-{val_loss:.4f}'."


def _with_suffix(name: str) -> str:
    return name if name.endswith(".ckpt") else f"{name}.ckpt"


def _plain_file_name(name: str) -> bool:
    return (
        bool(name)
        and name not in (".ckpt", LAST_NAME)
        and os.path.basename(name) == name
        and not any(char in name for char in "/\\\x00")
        and not name.startswith(".")
    )


def _check_field(template: str, field: str, spec: str, conversion: str | None) -> None:
    if not field.isidentifier():
        raise ValueError(
            f"Expected `filename` to use plain field names ('epoch', 'step' or an epoch log "
            f"key such as 'val_loss'), but {template!r} has the field {{{field}}}. {_EXAMPLE}"
        )
    sample: object = 0 if field in _INT_FIELDS else 0.5
    if conversion is not None:
        sample = repr(sample) if conversion == "r" else str(sample)
    try:
        if "{" in spec:
            raise ValueError("nested fields are not supported")
        format(sample, spec)
    except (ValueError, TypeError) as exc:
        kind = "an int" if field in _INT_FIELDS else "a float"
        raise ValueError(
            f"Expected `filename` to have a valid format spec for {{{field}}} ({kind}), but "
            f"{template!r} gives it {spec!r}: {exc}. {_EXAMPLE}"
        ) from exc


def check_template(template: object) -> str:
    """Return ``template`` when it is a usable file name template.

    Raises:
        ValueError: It is not a str, not a ``str.format`` template, uses a field that is not a
            plain name, a format spec its value cannot take, or yields ``last.ckpt`` or a name
            with a ``/``.
    """
    if not isinstance(template, str):
        raise TypeError(
            f"Expected `filename` to be a str (a str.format template), but got "
            f"{type(template).__name__} {template!r}. {_EXAMPLE}"
        )
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"Expected `filename` to be a str.format template, but got {template!r} ({exc})."
        ) from exc
    fields = {}
    for _, field, spec, conversion in parsed:
        if field is not None:
            _check_field(template, field, spec or "", conversion)
            fields[field] = 0 if field in _INT_FIELDS else 0.5
    if "/" in template or not _plain_file_name(_with_suffix(template.format(**fields))):
        raise ValueError(
            f"Expected `filename` to be a file name template other than {LAST_NAME!r}, not "
            f"hidden and without '/', but got {template!r}. {_EXAMPLE}"
        )
    return template


def log_fields(template: str) -> list[str]:
    """The fields of a checked template that come from the epoch logs (not epoch or step)."""
    fields = (field for _, field, _, _ in string.Formatter().parse(template) if field)
    return [field for field in dict.fromkeys(fields) if field not in _INT_FIELDS]


def fill_template(template: str, epoch: int, step: int, logs: Mapping[str, float]) -> str:
    """The file name for an epoch: ``template`` filled, with ``.ckpt`` appended when missing.

    Raises:
        ValueError: A field is not in the logs, or the result is not a plain file name.
    """
    fields = {**{key: float(value) for key, value in logs.items()}, "epoch": epoch, "step": step}
    try:
        name = _with_suffix(template.format(**fields))
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"ModelCheckpoint could not fill its filename template {template!r} "
            f"({type(exc).__name__}: {exc}); available fields: {sorted(fields)}. "
            f"Hint: use only those names, e.g. 'epoch={{epoch:03d}}'."
        ) from exc
    if not _plain_file_name(name):
        raise ValueError(
            f"ModelCheckpoint's filename template {template!r} gave {name!r}, which is not a "
            f"plain file name inside its folder. {_EXAMPLE}"
        )
    return name


def unique_name(folder: Path, name: str, taken: Collection[str]) -> str:
    """``name``, or ``<stem>-v1.ckpt``, ``-v2``, ... when it is taken or exists in ``folder``."""
    stem = name[: -len(".ckpt")]
    candidates = itertools.chain([name], (f"{stem}-v{i}.ckpt" for i in itertools.count(1)))
    for candidate in candidates:
        if candidate not in taken and not os.path.lexists(folder / candidate):
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover
