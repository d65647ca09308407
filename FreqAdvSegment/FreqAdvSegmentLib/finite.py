"""The one parser for numbers a user types (command-line options, attack requests, form fields,
label maps) and the one check for numbers the Python API is given: finite, or a clear ValueError.

``float("1e309")`` is ``inf`` and ``float(Fraction("1e309"))`` raises OverflowError, which is not a
ValueError: both reached the attacks as NaN volumes or ended in tracebacks. A huge exponent
(``1e999999999``) would also make ``Fraction`` build a billion-digit integer, so exponents are
bounded before any arithmetic.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

# A decimal number: digits, optional point and fraction, optional exponent (no "nan", "inf", "_").
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)(?:[eE]([+-]?\d{1,6}))?")
_MAX_EXPONENT = 1000  # far past float's range (about 1e308), small enough to compute with at once


def parse_number(text: Any, what: str = "the value") -> float:
    """``text`` (a number such as ``8``, ``0.03``, ``1e-3``, or a fraction ``4/255``) as a finite float.

    Raises:
        ValueError: not a number or fraction, a zero denominator, or a value that is not finite
            as a float (``nan``, ``inf``, ``1e309``), naming ``what``.
    """
    raw = str(text).strip()
    parts = raw.split("/")
    if len(parts) > 2 or not all(_DECIMAL.fullmatch(p.strip()) for p in parts):
        raise ValueError(f"{what} must be a number or a fraction like 4/255, got {raw!r}")
    for part in parts:
        exponent = _DECIMAL.fullmatch(part.strip())[2]
        if exponent is not None and abs(int(exponent)) > _MAX_EXPONENT:
            raise ValueError(f"{what} is out of range (a finite number is needed), got {raw!r}")
    try:
        value = float(Fraction(parts[0].strip()) / Fraction(parts[1].strip() if len(parts) == 2 else "1"))
    except ZeroDivisionError:
        raise ValueError(f"{what} divides by zero: {raw!r}") from None
    except OverflowError:
        raise ValueError(f"{what} is out of range (a finite number is needed), got {raw!r}") from None
    return require_finite(value, what)


def require_finite(value: Any, what: str = "the value") -> float:
    """``value`` as a finite float; ValueError (naming ``what``) for NaN, infinities, huge integers
    and anything that is not a real number (bools count as not numbers)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{what} is out of range (a finite number is needed), got {value!r}") from None
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return number


def require_whole(value: Any, what: str = "the value") -> int:
    """``value`` as an int: a whole finite number (``3``, ``3.0``, ``"3"``); ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = parse_number(value, what) if isinstance(value, str) else require_finite(value, what)
    if not number.is_integer():
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    return int(number)
