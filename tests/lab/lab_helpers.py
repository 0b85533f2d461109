"""Helpers the lab's test files share (a unique module name: importable from any of them)."""

from hashhop.lab.experiments import smoke


def tiny(**changes):
    """The smoke experiment's first run, with ``changes``."""
    return smoke()[0].replace(**changes)
