"""rnnkit's command line: ``python -m rnnkit shapes ...``, also installed as ``rnnkit``.

Example:
    ``python -m rnnkit shapes --cell lstm --input-size 28 --hidden-size 128 --num-layers 2
    --bidirectional --batch 64 --length 28`` prints the shape of every tensor of that layer
    (see :meth:`rnnkit.shapes.RecurrentSpec.describe`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

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


def build_parser() -> argparse.ArgumentParser:
    """The ``rnnkit`` argument parser, with its ``shapes`` command."""
    parser = argparse.ArgumentParser(prog="rnnkit", description="rnnkit's command line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_shapes_command(commands)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 2 on invalid arguments.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse exits on --help and on usage errors
        return stop.code if isinstance(stop.code, int) else 2
    try:
        text = _shapes(args)
    except ValueError as error:
        print(f"rnnkit shapes: error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
