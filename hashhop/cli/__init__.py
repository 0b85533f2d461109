"""The ``hashhop`` command line: one module per command group, each only parsing arguments.
Bad input exits with status 2 and one line on stderr; nothing here imports torch until a command needs it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from hashhop.errors import HashHopError

if TYPE_CHECKING:  # imported on use, inside main's try (see main)
    import argparse


def build_parser() -> argparse.ArgumentParser:
    from hashhop.cli import generate, harness, lab, ltm
    from hashhop.cli.common import Parser

    parser = Parser(prog="hashhop", description="HashHop: long-context data, evaluation and models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    generate.add(sub)
    harness.add(sub)
    lab.add(sub)
    ltm.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every import (argparse, the command modules, numpy, torch) happens inside the ``try``, so a Ctrl-C at any
    point after Python has started, start-up included, is one line and exit status 130."""
    command = "hashhop"
    ctrl_c: list[int] = []
    restore = None
    try:
        restore = _watch_ctrl_c(ctrl_c)
        args = build_parser().parse_args(argv)
        command = f"hashhop {args.command}"
        return args.run(args)
    except HashHopError as err:
        if ctrl_c:  # e.g. a tokenizer that failed to load because Ctrl-C cut its import
            return _interrupted(command)
        from hashhop.cli.common import one_line

        print(one_line(f"{command}: error: {err}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # at any point, start-up included: one line, no traceback
        return _interrupted(command)
    except BrokenPipeError:  # e.g. `hashhop generate -o - | head`
        sys.stderr.close()
        return 0
    except Exception:
        # A Ctrl-C inside a C extension's import can come out as another error: numpy's import, cut while it
        # loads datetime, raises ImportError and drops the KeyboardInterrupt. After a Ctrl-C, any error is its effect.
        if ctrl_c:
            return _interrupted(command)
        raise
    finally:
        if restore is not None:
            restore()


def _interrupted(command: str) -> int:
    print(f"{command}: interrupted", file=sys.stderr)
    return 130


def _watch_ctrl_c(seen: list[int]):
    """While a command runs, note each SIGINT in ``seen`` and raise KeyboardInterrupt as Python's own handler
    does; a KeyboardInterrupt raised where Python cannot pass it on (a callback of the import system: "Exception
    ignored in ...") is not printed but raised again a moment later. An ignored SIGINT (``nohup``, a background
    job) stays ignored. Returns the function that puts Python's handlers back."""
    import signal

    def on_sigint(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    def on_unraisable(info) -> None:
        if seen and isinstance(info.exc_type, type) and issubclass(info.exc_type, KeyboardInterrupt):
            import _thread
            import threading

            # Not from here: a KeyboardInterrupt raised in this hook would be "ignored" in its turn.
            timer = threading.Timer(0.01, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            return
        previous_hook(info)

    try:
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.default_int_handler:
            return None
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: signals are the main thread's
        return None
    previous_hook = sys.unraisablehook
    sys.unraisablehook = on_unraisable

    def restore() -> None:
        if signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, previous)
        if sys.unraisablehook is on_unraisable:
            sys.unraisablehook = previous_hook

    return restore


if __name__ == "__main__":
    sys.exit(main())
