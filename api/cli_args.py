"""Argument parsing shared by every `harbor` subcommand module."""

from __future__ import annotations

import argparse
from datetime import date
from uuid import UUID

from domain.registry import Registry


def iso_date(text: str) -> date:
    """An argparse type: a YYYY-MM-DD date."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def member_ref(registry: Registry, text: str) -> UUID:
    """A member named by its id or by its ID number."""
    try:
        return UUID(text)
    except ValueError:
        return registry.member_id_for(text)
