"""What every command group shares: the parser class, value types, and the grid options of eval and export."""

from __future__ import annotations

import argparse
import math

from hashhop.errors import HashHopError
from hashhop.task.spec import parse_size


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def size(text: str) -> int:
    try:
        return parse_size(text)
    except HashHopError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def size_list(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if any(not part.strip() for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item: write sizes like 1k,4k,16k")
    return tuple(size(part) for part in parts)


def int_list(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    try:
        if any(not part.strip() for part in parts):
            raise ValueError
        return tuple(int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers, e.g. 1,2,3") from None


def finite_float(text: str) -> float:
    """A float that is a number (not nan, not inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def progress_on(args) -> bool:
    import sys

    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


COT = {"both": (False, True), "on": (True,), "off": (False,)}


def add_grid_args(p) -> None:
    """The grid options shared by eval and export."""
    p.add_argument("--lengths", type=size_list, default=(1000, 4000), metavar="L1,L2,..", help="HashHop prompt lengths in the model's tokens")
    p.add_argument("--hops", type=int_list, default=(1, 2), metavar="H1,H2,..", help="hop counts")
    p.add_argument("--cot", choices=tuple(COT), default="both", help="chain of thought on, off or both")
    p.add_argument("--samples", type=int, default=2, help="problems per cell")
    p.add_argument("--queries", type=int, default=2, help="queries per problem (one request each)")
    p.add_argument("--hash-length", type=int, default=16, help="characters per hash")
    p.add_argument("--seed", type=int, default=0, help="grid seed")


def grid_from_args(args):
    from hashhop.eval.grid import Grid

    return Grid(
        lengths=args.lengths,
        hops=args.hops,
        cot=COT[args.cot],
        samples=args.samples,
        queries=args.queries,
        hash_length=args.hash_length,
        seed=args.seed,
    )
