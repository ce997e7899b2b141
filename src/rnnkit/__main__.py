"""rnnkit's command line: ``python -m rnnkit COMMAND ...``, also installed as ``rnnkit``.

Examples:
    ``python -m rnnkit shapes --cell lstm --input-size 28 --hidden-size 128 --num-layers 2
    --bidirectional --batch 64 --length 28`` prints the shape of every tensor of that layer
    (see :meth:`rnnkit.shapes.RecurrentSpec.describe`).

    ``python -m rnnkit export run.ckpt --onnx model.onnx [--mode step]`` writes the
    checkpoint's model as an ONNX file and its JSON sidecar (see
    :func:`rnnkit.export.to_onnx`); ``--torch-export model.pt2`` saves a
    :func:`torch.export.export` program (see :func:`rnnkit.export.to_torch_export`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rnnkit.errors import RnnkitError
from rnnkit.shapes import RecurrentSpec

__all__ = ["build_parser", "main"]


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _add_shapes_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shapes = commands.add_parser(
        "shapes",
        help="print the shape of every tensor of a recurrent layer",
        description="Print the layout (in symbols) and shape (in numbers) of x, h_0, c_0, "
        "output, h_n and c_n for one torch.nn.RNN/LSTM/GRU layer.",
    )
    shapes.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="rnn")
    shapes.add_argument("--input-size", type=_count(1), required=True, help="H_in")
    shapes.add_argument("--hidden-size", type=_count(1), required=True, help="H_cell")
    shapes.add_argument("--num-layers", type=_count(1), default=1)
    shapes.add_argument("--bidirectional", action="store_true", help="D = 2")
    shapes.add_argument("--proj-size", type=_count(0), default=0, help="LSTM only: H_out")
    shapes.add_argument(
        "--time-first", action="store_true", help="batch_first=False: x is (L, N, H_in)"
    )
    batch = shapes.add_mutually_exclusive_group(required=True)
    batch.add_argument("--batch", type=_count(1), help="N, the batch size")
    batch.add_argument("--unbatched", action="store_true", help="x is (L, H_in)")
    shapes.add_argument("--length", type=_count(1), required=True, help="L, the sequence length")


def _add_export_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export",
        help="export a checkpoint's model to ONNX or torch.export",
        description="Load the model of an rnnkit checkpoint and write it as an ONNX file (with "
        "a .json sidecar describing its inputs and outputs) and/or a torch.export program.",
    )
    export.add_argument("checkpoint", type=Path, help="the rnnkit checkpoint (.ckpt)")
    export.add_argument("--onnx", type=Path, help="write an ONNX file here")
    export.add_argument("--torch-export", type=Path, help="write a torch.export program here")
    export.add_argument(
        "--mode",
        choices=("sequence", "step"),
        default="sequence",
        help="whole sequences (default), or one time step with the state as input and output",
    )
    export.add_argument(
        "--no-lengths", action="store_true", help="sequence mode: no `lengths` input"
    )
    export.add_argument(
        "--no-initial-state", action="store_true", help="sequence mode: no h0/c0 inputs"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``rnnkit`` argument parser, with its ``shapes`` and ``export`` commands."""
    parser = argparse.ArgumentParser(prog="rnnkit", description="rnnkit's command line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_shapes_command(commands)
    _add_export_command(commands)
    return parser


def _shapes(args: argparse.Namespace) -> str:
    spec = RecurrentSpec(
        cell=args.cell,
        input_size=args.input_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        bidirectional=args.bidirectional,
        batch_first=not args.time_first,
        proj_size=args.proj_size,
    )
    return spec.describe(None if args.unbatched else args.batch, args.length)


def _export(args: argparse.Namespace) -> str:
    import torch

    from rnnkit.export import sidecar_path, to_onnx, to_torch_export
    from rnnkit.io import load_model
    from rnnkit.models import RecurrentModel

    if args.onnx is None and args.torch_export is None:
        raise ValueError("nothing to write. Hint: pass --onnx PATH and/or --torch-export PATH.")
    if args.mode == "step" and (args.no_lengths or args.no_initial_state):
        raise ValueError(
            "Expected --mode sequence with --no-lengths or --no-initial-state, but got --mode "
            "step. Hint: a step-mode graph always takes one step and the state, no lengths; "
            "drop those flags."
        )
    for option, target in (("--onnx", args.onnx), ("--torch-export", args.torch_export)):
        _check_output(option, target)
    model = load_model(args.checkpoint)
    assert isinstance(model, RecurrentModel)
    mode, lengths, state = args.mode, not args.no_lengths, not args.no_initial_state
    written = []
    if args.onnx is not None:
        path = to_onnx(model, args.onnx, mode=mode, lengths=lengths, initial_state=state)
        written += [f"wrote {path}", f"wrote {sidecar_path(path)}"]
    if args.torch_export is not None:
        program = to_torch_export(model, mode=mode, lengths=lengths, initial_state=state)
        torch.export.save(program, args.torch_export)
        written.append(f"wrote {args.torch_export}")
    return "\n".join(written)


def _check_output(option: str, target: str | None) -> None:
    """Refuse an output path that cannot be written, before the export's work is done."""
    if target is None:
        return
    path = Path(target)
    if path.is_dir():
        raise ValueError(
            f"Expected {option} to name a file, but got the folder {target!r}. Hint: name a "
            "file inside it."
        )
    if not path.parent.is_dir():
        raise ValueError(
            f"Expected {option} to name a file in an existing folder, but got {target!r}, "
            f"whose folder {str(path.parent)!r} does not exist. Hint: create it first."
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 2 on invalid arguments (or a checkpoint or model
        that cannot be exported).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse exits on --help and on usage errors
        return stop.code if isinstance(stop.code, int) else 2
    try:
        text = _export(args) if args.command == "export" else _shapes(args)
    except (ValueError, TypeError, ImportError, OSError, RnnkitError) as error:
        print(f"rnnkit {args.command}: error: {error}", file=sys.stderr)
        return 2
    try:
        print(text, flush=True)
    except BrokenPipeError:  # e.g. `python -m rnnkit shapes ... | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
