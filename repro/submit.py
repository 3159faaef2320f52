"""Placeholder: filled in by the work on issue 3 (being written now)."""

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:  # noqa: ARG001
    return None
