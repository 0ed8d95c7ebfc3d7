"""Tables as CSV for spreadsheets, the same from the HTTP API and the command line.

Fixed columns per table, a formula-safe cell for free text, and a byte order mark so
that Excel reads the Chinese right.
"""

from __future__ import annotations

import csv
import io
from dataclasses import fields
from typing import Any

from projections.judgements import Finding
from projections.queries import ScoreCard

# Fixed columns per CSV answer: the header is there even without rows, and every row has
# the same cells whichever kinds of item it holds.
QUEUE_COLUMNS = (
    "queue", "kind", "member_id", "member_name", "case_id", "letter_no", "since", "valid_until",
    "days_left", "taken_on", "from", "to",
    "handover", "opened_on", "outcome", "stalled", "rule", "due_on", "detail", "action",
)
SCORECARD_COLUMNS = tuple(f.name for f in fields(ScoreCard))
ROSTER_COLUMNS = (
    "relation", "member_id", "name", "standing", "holder_unit_id", "since", "status",
    "in_transit_to", "letter_no", "letter_valid_until", "open_case_id", "colour", "version",
)
FINDING_COLUMNS = (*(f.name for f in fields(Finding)), "member_name")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection):
# OWASP's advice is a leading apostrophe, which shows as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Excel reads a CSV without a byte order mark in the local code page, garbling Chinese.
BOM = "\ufeff"


def csv_cell(value: Any) -> str:
    """One value as a CSV cell: empty for null, true/false, free text made formula-safe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if isinstance(value, str) and text.startswith(_FORMULA_STARTS) else text


def csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """``rows`` as CSV with ``columns`` (the header even without rows), after the BOM."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([csv_cell(row.get(column)) for column in columns] for row in rows)
    return out.getvalue()
