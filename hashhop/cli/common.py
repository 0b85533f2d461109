"""What every command group shares: the parser class, value types, and the grid options of eval and export."""

from __future__ import annotations

import argparse
import math

from hashhop.errors import HashHopError
from hashhop.task.spec import parse_size


def one_line(text: str) -> str:
    """``text`` with every character that would break the line (\\n, \\r, \\u2028, \\x1c, ...) escaped: an error
    message that quotes the user's input stays one line."""
    return "".join(ch.encode("unicode_escape").decode() if len(f"a{ch}b".splitlines()) > 1 else ch for ch in text)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, one_line(f"{self.prog}: error: {message} (see {self.prog} --help)") + "\n")

    def _get_values(self, action, arg_strings):
        # argparse drops a '--' given as an option's value (``--samples=--``) and hands the command an empty list.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected a value, got '--'")
        return super()._get_values(action, arg_strings)


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


def float_list(text: str) -> tuple[float, ...]:
    """Comma-separated numbers (their range is the config's to check: it names the field)."""
    parts = text.split(",")
    try:
        if any(not part.strip() for part in parts):
            raise ValueError
        return tuple(float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 1e-3,3e-3") from None


def model_args(text: str) -> dict[str, str]:
    from hashhop.runners.base import parse_model_args

    try:
        return parse_model_args(text)
    except HashHopError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_model_args_arg(p) -> None:
    p.add_argument(
        "--model-args",
        type=model_args,
        default={},
        metavar="KEY=VALUE,...",
        help="options of the model itself; builtin:ltm2 takes beams and length_penalty (e.g. "
        "beams=4,length_penalty=1: a beam search over four answers compared by log-probability per byte); "
        "they become part of the model's name in results%(default).0s",
    )


def check_output_file(path: str, what: str = "output") -> None:
    """Fail before any work unless a file can really be created next to ``path`` (``/proc`` says writable and
    refuses; a missing folder or a folder named as the file fail too). Creates and removes a probe file only."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise HashHopError(f"{what} {path} is a folder: name a file inside it")
    if os.path.exists(path) and not os.path.isfile(path):
        raise HashHopError(f"{what} {path} is not a regular file")
    probe = os.path.join(folder, f".hashhop-write-test-{os.getpid()}")
    try:
        with open(probe, "x"):
            pass
        os.remove(probe)
    except OSError as err:
        raise HashHopError(f"cannot write {what} {path}: {err.strerror or err}") from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise HashHopError(f"cannot write {what} {path}: permission denied")


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
