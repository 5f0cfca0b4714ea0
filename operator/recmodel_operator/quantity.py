"""Kubernetes resource quantities ("500m", "2", "4Gi") as exact numbers (pure)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_PATTERN = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
BINARY_SUFFIXES = frozenset(s for s in _SUFFIXES if s.endswith("i"))


def parse_quantity(text: str | int | float) -> Decimal:
    """The value of a quantity; ValueError when it is not one."""
    if isinstance(text, int | float):
        return Decimal(str(text))
    match = _PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, suffix = match.groups()
    try:
        return Decimal(number) * _SUFFIXES[suffix or ""]
    except InvalidOperation as error:
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from error


def suffix_of(text: str) -> str:
    match = _PATTERN.match(text.strip())
    return (match.group(2) or "") if match else ""


def same_quantity(a: object, b: object) -> bool:
    """Equal as quantities ("0.5" and "500m"), for values the API server normalises."""
    if not isinstance(a, str | int | float) or not isinstance(b, str | int | float):
        return False
    try:
        return parse_quantity(a) == parse_quantity(b)
    except ValueError:
        return False
