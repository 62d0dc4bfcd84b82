"""Memory and disk sizes as the SDK accepts them (``4``, ``"512MiB"``, ``"1.5GiB"``), turned into whole MiB."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")
# Binary units throughout, as Docker does: "4G", "4GB" and "4GiB" all mean 4096 MiB.
_UNIT_MIB: Final = {
    "": 1024,
    "g": 1024,
    "gb": 1024,
    "gi": 1024,
    "gib": 1024,
    "m": 1,
    "mb": 1,
    "mi": 1,
    "mib": 1,
}
_UNIT_MIB.update({"t": 1024**2, "tb": 1024**2, "ti": 1024**2, "tib": 1024**2})


def parse_size_mib(value: int | float | str) -> int:
    """Convert a memory or disk size to whole MiB.

    Numbers are GiB (``4`` → 4096, ``1.5`` → 1536). Strings are a number with an optional unit, case
    insensitive: ``M``/``MB``/``MiB``, ``G``/``GB``/``GiB`` (the default), ``T``/``TB``/``TiB``, all binary
    (1G = 1024 MiB), e.g. ``"512MiB"``, ``"4GiB"``, ``"1.5GiB"``, ``"10G"``, ``"100M"``.
    Raises ``ValueError`` for anything else, for zero, and for sizes that are not a whole number of MiB.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid size {value!r}: expected a number of GiB or a string such as '4GiB'")
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNIT_MIB:
            raise ValueError(
                f"invalid size {value!r}: expected a number with an optional unit "
                "(M, MiB, G, GiB, T, TiB; default GiB), e.g. '512MiB', '4GiB', '1.5GiB', '10G'"
            )
        number, factor = match.group(1), _UNIT_MIB[unit]
    else:
        number, factor = str(value), 1024
    try:
        mib = Decimal(number) * factor
    except InvalidOperation as exc:
        raise ValueError(f"invalid size {value!r}: not a number") from exc
    if not mib.is_finite():  # float nan / inf; the string pattern already refuses them
        raise ValueError(f"invalid size {value!r}: not a finite number")
    if mib <= 0:
        raise ValueError(f"invalid size {value!r}: must be greater than zero")
    if mib != mib.to_integral_value():
        raise ValueError(f"invalid size {value!r}: is {mib} MiB, not a whole number of MiB")
    return int(mib)
