"""The ``hashhop`` command line: one module per command group, each only parsing arguments.
Bad input exits with status 2 and one line on stderr; nothing here imports torch until a command needs it."""

from __future__ import annotations

import argparse
import sys

from hashhop.errors import HashHopError


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
    from hashhop.cli.common import one_line

    command = "hashhop"
    try:
        args = build_parser().parse_args(argv)
        command = f"hashhop {args.command}"
        return args.run(args)
    except HashHopError as err:
        print(one_line(f"{command}: error: {err}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # at any point, start-up included: one line, no traceback
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hashhop generate -o - | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
