"""Command line entry point `bioreactor-edge`."""

from __future__ import annotations

import argparse

from . import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bioreactor-edge", description="Bioreactor edge agent")
    parser.add_argument("--version", action="version", version=__version__)
    parser.parse_args(argv)
    return 0
