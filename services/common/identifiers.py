"""Real-shaped identifiers of the registers: validation and generation of valid test values.

BSN (burgerservicenummer) and onderwijsnummer share the "11-proof" weighting
9·d1 + 8·d2 + … + 2·d8 − 1·d9; a BSN's sum is 0 (mod 11), an onderwijsnummer's
is 5 (mod 11) and it starts with "10", so the two can never be confused.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)

# The official BRP test persons (RvIG's test sets, see DESIGN.md "Persons") use BSNs in this range,
# which is never issued to a real person; seeded persons do too.
TEST_BSN_FIRST = 999_970_008
TEST_BSN_LAST = 999_999_990
# How many valid (11-proof) BSNs the test range holds: every default seed and simulated day fits in it.
TEST_BSN_COUNT = 2_728

_BRIN = re.compile(r"^\d{2}[A-Z]{2}$")
_BRIN_BRANCH = re.compile(r"^\d{2}[A-Z]{2}\d{2}$")
_RIO_CODE = {
    "board": re.compile(r"^\d{3}B\d{3}$"),  # onderwijsbestuur
    "provider": re.compile(r"^\d{3}A\d{3}$"),  # onderwijsaanbieder
    "location": re.compile(r"^\d{3}X\d{3}$"),  # onderwijslocatie
    "course_unit": re.compile(r"^\d{4}O\d{4}$"),  # opleidingseenheid
}
_COURSE_CODE = {
    "CREBO": re.compile(r"^\d{5}$"),  # mbo qualifications
    "ISAT": re.compile(r"^\d{5}$"),  # ho programmes (CROHO)
    "ILT": re.compile(r"^\d{4}$"),  # vo programmes
    "PO": re.compile(r"^(BAO|SBAO|SO)$"),  # primary school types
}


class InvalidIdentifierError(ValueError):
    """An identifier that does not have the register's shape; the message says why."""


def _weighted_sum(digits: str) -> int:
    if len(digits) == 9 and digits.isascii() and digits.isdigit():
        # Unrolled over the ASCII codes: the generator of int() calls below was a tenth of a bulk registration's
        # CPU (three checks an item: the request, the answer, the feedback; py-spy, issue 11).
        b = digits.encode()
        return 9 * b[0] + 8 * b[1] + 7 * b[2] + 6 * b[3] + 5 * b[4] + 4 * b[5] + 3 * b[6] + 2 * b[7] - b[8] - 43 * 48
    return sum(w * int(d) for w, d in zip(_WEIGHTS, digits, strict=True))


def is_valid_bsn(value: str) -> bool:
    return (
        len(value) == 9
        and value.isascii()
        and value.isdigit()
        and value != "000000000"
        and _weighted_sum(value) % 11 == 0
    )


def is_valid_onderwijsnummer(value: str) -> bool:
    return (
        len(value) == 9
        and value.isascii()
        and value.isdigit()
        and value.startswith("10")
        and _weighted_sum(value) % 11 == 5
    )


def validate_bsn(value: str) -> str:
    if not (len(value) == 9 and value.isascii() and value.isdigit()):
        raise InvalidIdentifierError(f"BSN must be 9 digits, got {value!r}")
    if not is_valid_bsn(value):
        raise InvalidIdentifierError(f"BSN {value} fails the 11-proof")
    return value


def validate_onderwijsnummer(value: str) -> str:
    if not (len(value) == 9 and value.isascii() and value.isdigit() and value.startswith("10")):
        raise InvalidIdentifierError(f"onderwijsnummer must be 9 digits starting with 10, got {value!r}")
    if not is_valid_onderwijsnummer(value):
        raise InvalidIdentifierError(f"onderwijsnummer {value} fails the 11-proof (sum must be 5 mod 11)")
    return value


def validate_institution_code(value: str) -> str:
    """BRIN code: 2 digits + 2 capital letters, for example 25BE."""
    if not _BRIN.match(value):
        raise InvalidIdentifierError(f"institution code must be 2 digits + 2 capitals (like 25BE), got {value!r}")
    return value


def validate_branch_code(value: str) -> str:
    """BRIN vestiging: an institution code plus 2 digits, for example 25BE00."""
    if not _BRIN_BRANCH.match(value):
        raise InvalidIdentifierError(f"branch code must be a BRIN code plus 2 digits (like 25BE00), got {value!r}")
    return value


def validate_rio_code(kind: str, value: str) -> str:
    """RIO codes: board nnnBnnn, provider nnnAnnn, location nnnXnnn, course unit nnnnOnnnn."""
    pattern = _RIO_CODE[kind]
    if not pattern.match(value):
        raise InvalidIdentifierError(f"{kind} code must match {pattern.pattern}, got {value!r}")
    return value


def validate_course_code(system: str, value: str) -> str:
    """Course code of a code system: CREBO and ISAT 5 digits, ILT 4 digits, PO a school type."""
    pattern = _COURSE_CODE[system]
    if not pattern.match(value):
        raise InvalidIdentifierError(f"{system} course code must match {pattern.pattern}, got {value!r}")
    return value


def _complete(prefix8: str, remainder: int) -> str | None:
    """The 9-digit number starting with prefix8 whose weighted sum is remainder (mod 11), if a digit fits."""
    partial = sum(w * int(d) for w, d in zip(_WEIGHTS[:8], prefix8, strict=True))
    last = (partial - remainder) % 11  # partial - d9 ≡ remainder
    return f"{prefix8}{last}" if last <= 9 else None


def is_test_bsn(value: str) -> bool:
    """True for a valid BSN of the official test range, which no real person holds."""
    return is_valid_bsn(value) and TEST_BSN_FIRST <= int(value) <= TEST_BSN_LAST


def random_bsn(rng: random.Random) -> str:
    """A random valid BSN, NOT from the test range: it may belong to a real person. Never use it for seed data."""
    while True:
        prefix = f"{rng.randrange(10_000_000, 100_000_000):08d}"
        candidate = _complete(prefix, 0)
        if candidate is not None and is_valid_bsn(candidate):
            return candidate


def test_bsns() -> Iterator[str]:
    """Every valid BSN of the official test range (999970008 to 999999990), ascending: about 2,700."""
    for number in range(TEST_BSN_FIRST, TEST_BSN_LAST + 1):
        candidate = f"{number:09d}"
        if is_valid_bsn(candidate):
            yield candidate


def synthetic_bsns() -> Iterator[str]:
    """Valid BSNs counting down from just below the test range (999970007, 999969999, ...): opt-in only.

    WARNING: these pass the 11-proof and lie OUTSIDE the official test range, so a real person may hold
    any of them. The seed uses them only when a caller asks for more persons than the test range holds
    and explicitly opts in (SeedSandboxRequest.synthetic_bsns); never mix such a sandbox's data with real
    data. Counting down from the range keeps them recognisable (they all start with 99).
    """
    for number in range(TEST_BSN_FIRST - 1, 0, -1):
        candidate = f"{number:09d}"
        if is_valid_bsn(candidate):
            yield candidate


# A-nummer (administratienummer, BRP element 01.10): 10 digits, the first not 0, no digit twice in a row.
# The BRP API's own schema (BRP-API/brp-api-gebeurtenissen, specificaties/brp/identificatienummers/
# anummer-v1.yaml) defines it with the pattern ^(?!.*([0-9])\1)[1-9][0-9]{9}$.
_A_NUMMER = re.compile(r"^(?!.*([0-9])\1)[1-9][0-9]{9}$")


def is_valid_a_nummer(value: str) -> bool:
    return value.isascii() and bool(_A_NUMMER.match(value))


def a_nummer_for_bsn(bsn: str) -> str:
    """The sandbox's A-nummer of the person with this BSN: a valid A-nummer, different for every BSN.

    The real register issues A-nummers on its own; the sandbox derives them from the BSN so that a seeded
    person, a born one and a message about either agree without a lookup. The BSN (below 10^9 < 9^10) is
    written in base 9 and each base-9 digit picks one of the nine digits that differ from the previous one
    (the first from 1-9), which is one-to-one and never repeats a digit.
    """
    number = int(bsn)
    base9 = []
    for _ in range(10):
        number, digit = divmod(number, 9)
        base9.append(digit)
    digits: list[int] = []
    for position, choice in enumerate(reversed(base9)):
        if position == 0:
            digits.append(choice + 1)
        else:
            allowed = [d for d in range(10) if d != digits[-1]]
            digits.append(allowed[choice])
    return "".join(map(str, digits))


def make_onderwijsnummer(serial: int) -> str | None:
    """The onderwijsnummer "10" + serial (6 digits) + check digit, or None when no check digit fits.

    About 1 serial in 11 has no fitting check digit; an allocator simply moves on to the next serial.
    """
    if not 0 <= serial < 1_000_000:
        raise OverflowError("onderwijsnummer serial must be 0..999999")
    return _complete(f"10{serial:06d}", 5)


def format_rio_code(kind: str, number: int) -> str:
    """RIO code number n of a kind, for example format_rio_code("board", 1) == "100B001".

    An opleidingseenheid (course unit) has four digits each side: format_rio_code("course_unit", 1) == "1000O0001".
    """
    if kind == "course_unit":
        high, low = divmod(number, 10000)
        return f"{1000 + high:04d}O{low:04d}"
    letter = {"board": "B", "provider": "A", "location": "X"}[kind]
    high, low = divmod(number, 1000)
    return f"{100 + high:03d}{letter}{low:03d}"


def format_institution_code(number: int) -> str:
    """The number-th BRIN code (from 0): 00AA, 00AB, … 99ZZ (67,600 codes)."""
    digits, letters = divmod(number, 26 * 26)
    if digits > 99:
        raise OverflowError("institution code range exhausted")
    first, second = divmod(letters, 26)
    return f"{digits:02d}{chr(65 + first)}{chr(65 + second)}"
