"""Argument parsing shared by every `harbor` subcommand module."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from datetime import date
from typing import Any, cast
from uuid import UUID

from domain.registry import Registry


def iso_date(text: str) -> date:
    """An argparse type: a YYYY-MM-DD date."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def whole_number(name: str, low: int, high: int = 2**62) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, refused naming ``name``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            span = f"at least {low}" if high == 2**62 else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"{name} is a whole number {span} (got {text!r})")
        return value

    return parse


def member_ref(registry: Registry, text: str) -> UUID:
    """A member named by its id or by its ID number."""
    try:
        return UUID(text)
    except ValueError:
        return registry.member_id_for(text)


class HarborParser(argparse.ArgumentParser):
    """A parser whose every command and subcommand also takes ``--json``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand sets `json` only when given it, so its default cannot undo
        # a --json typed before the command (`harbor --json verify`).
        self.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print results (and refusals) as JSON where the command prints any",
        )


def add_command(
    sub: Any, name: str, *, summary: str, description: str, example: str
) -> argparse.ArgumentParser:
    """Add a subcommand whose help page has a description and an example, as written."""
    return cast(
        argparse.ArgumentParser,
        sub.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description, width=78),
            epilog="example:\n" + textwrap.indent(example.strip("\n"), "  "),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        ),
    )
