"""Small pieces of wording shared by the markdown reports and the chart: percentages,
table cells, metadata values and relative changes."""

from __future__ import annotations

import json
import math
from typing import Any


def percent(value: float | None) -> str:
    """A rate as a percentage with two decimals (``"n/a"`` when unknown)."""
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def cell(text: Any) -> str:
    """Text safe inside a markdown table cell (one line, pipes escaped)."""
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def shown(value: Any) -> str:
    """A metadata value as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def describe_reduction(reduction: float | None) -> str:
    """A relative change in words: "12.5% relative reduction" (or increase)."""
    if reduction is None:
        return "relative change n/a"
    if reduction >= 0:
        return f"{100 * reduction:.1f}% relative reduction"
    return f"{-100 * reduction:.1f}% relative increase"
