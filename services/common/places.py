"""Dutch municipalities with their CBS codes, place names and postcode areas, for seed addresses that agree."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Municipality:
    """A municipality (gemeente): its CBS code (as BRP's Gemeentecode and RIO's addresses use it), name,
    the first two digits of its postcodes, and a weight roughly proportional to its population."""

    code: str
    name: str
    postcode_prefix: str
    weight: int


# Large municipalities with their CBS gemeentecode (CBS "Gemeentelijke indeling", the codes BRP's
# table 33 "Gemeententabel" uses), the first two digits of their postcodes (PostNL) and a weight
# roughly proportional to population (CBS 2024, in tens of thousands). The place name is the
# municipality's own, so an address's municipality code always matches its place name.
MUNICIPALITIES: tuple[Municipality, ...] = (
    Municipality("0363", "Amsterdam", "10", 93),
    Municipality("0599", "Rotterdam", "30", 67),
    Municipality("0518", "'s-Gravenhage", "25", 56),
    Municipality("0344", "Utrecht", "35", 37),
    Municipality("0772", "Eindhoven", "56", 24),
    Municipality("0014", "Groningen", "97", 24),
    Municipality("0855", "Tilburg", "50", 23),
    Municipality("0034", "Almere", "13", 22),
    Municipality("0758", "Breda", "48", 19),
    Municipality("0268", "Nijmegen", "65", 18),
    Municipality("0200", "Apeldoorn", "73", 17),
    Municipality("0392", "Haarlem", "20", 17),
    Municipality("0202", "Arnhem", "68", 17),
    Municipality("0153", "Enschede", "75", 16),
    Municipality("0307", "Amersfoort", "38", 16),
    Municipality("0479", "Zaanstad", "15", 16),
    Municipality("0796", "'s-Hertogenbosch", "52", 16),
    Municipality("0193", "Zwolle", "80", 13),
    Municipality("0546", "Leiden", "23", 13),
    Municipality("0935", "Maastricht", "62", 12),
)
BY_CODE = {m.code: m for m in MUNICIPALITIES}
WEIGHTS = [m.weight for m in MUNICIPALITIES]
