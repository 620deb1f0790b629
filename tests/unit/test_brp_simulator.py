"""The feed simulator: a deterministic, realistic day whose every message xmllint accepts and the rules apply."""

from __future__ import annotations

import collections
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from services.brp_sync import rules, seeding
from services.brp_sync.rules import Gebeurtenis
from services.brp_sync.simulator import simulate_day, write_directory, write_file
from services.brp_sync.xml_codec import SCHEMA_PATH

DAY = dt.date(2026, 11, 28)


def persons() -> list[rules.PersonState]:
    return seeding.seed_persons("small", 20260101, DAY)


def xmllint(*paths: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint missing: `make test` installs libxml2-utils (needs root and apt-get)")
    return subprocess.run(
        ["xmllint", "--noout", "--schema", str(SCHEMA_PATH), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_same_seed_gives_the_same_day_and_another_seed_another() -> None:
    first = simulate_day(persons(), DAY, 300, seed=5)
    assert first == simulate_day(persons(), DAY, 300, seed=5)
    assert first != simulate_day(persons(), DAY, 300, seed=6)


def test_a_day_is_mostly_relocations_with_every_other_kind_present() -> None:
    day = simulate_day(persons(), DAY, 3000, seed=1)
    assert len(day) == 3000
    kinds = collections.Counter(m.gebeurtenis for m in day)
    moves = kinds[Gebeurtenis.VERHUISD_BINNEN] + kinds[Gebeurtenis.VERHUISD_BUITEN]
    assert moves > 0.5 * len(day)
    assert set(kinds) == set(Gebeurtenis)
    times = [m.tijdstip_registratie for m in day]
    assert times == sorted(times) and all(t is not None for t in times)


def test_every_message_applies_in_order_to_the_register_it_was_made_for() -> None:
    register: dict[str, rules.PersonState] = {p.bsn: p for p in persons()}
    for mutatie in simulate_day(list(register.values()), DAY, 2000, seed=3):
        before = register.get(mutatie.bsn)
        assert mutatie.volgnummer == (before.last_sequence if before else 0) + 1
        register[mutatie.bsn] = rules.apply(before, mutatie)


def test_xmllint_accepts_the_day_file_and_every_message_file(tmp_path: Path) -> None:
    day = simulate_day(persons(), DAY, 1000, seed=2)
    write_file(day, tmp_path / "day.xml")
    whole = xmllint(tmp_path / "day.xml")
    assert whole.returncode == 0, whole.stderr[-2000:]
    write_directory(day[:200], tmp_path / "messages")
    files = sorted((tmp_path / "messages").glob("*.xml"))
    assert len(files) == 200
    each = xmllint(*files)
    assert each.returncode == 0, each.stderr[-2000:]


def test_a_second_day_brings_returns_that_xmllint_accepts_and_the_stays_abroad_are_kept(tmp_path: Path) -> None:
    """Emigrants of the first day may return on the next; each return ends a stay abroad that stays in history."""
    register: dict[str, rules.PersonState] = {p.bsn: p for p in persons()}
    for mutatie in simulate_day(list(register.values()), DAY, 1500, seed=4):
        register[mutatie.bsn] = rules.apply(register.get(mutatie.bsn), mutatie)
    next_day = DAY + dt.timedelta(days=1)
    day = simulate_day(list(register.values()), next_day, 1500, seed=5)
    returns = [m for m in day if m.gebeurtenis is Gebeurtenis.IMMIGRATIE and m.bsn in register]
    corrections = [m for m in day if m.gebeurtenis in (Gebeurtenis.GECORRIGEERD, Gebeurtenis.OVERLIJDEN_GECORRIGEERD)]
    assert returns and corrections
    for mutatie in day:
        register[mutatie.bsn] = rules.apply(register.get(mutatie.bsn), mutatie)
    for mutatie in returns:
        stay = register[mutatie.bsn].abroad[0]
        assert stay.end == next_day and stay.covers(DAY) and not stay.covers(next_day)
    write_file(day, tmp_path / "day.xml")
    whole = xmllint(tmp_path / "day.xml")
    assert whole.returncode == 0, whole.stderr[-2000:]


def test_xmllint_rejects_what_our_schema_forbids(tmp_path: Path) -> None:
    # Guards the test above: it must be able to fail.
    day = simulate_day(persons(), DAY, 5, seed=2)
    write_file(day, tmp_path / "day.xml")
    broken = (tmp_path / "day.xml").read_text().replace("<Volgnummer>", "<Volgnummer>-", 1)
    (tmp_path / "broken.xml").write_text(broken)
    assert xmllint(tmp_path / "broken.xml").returncode != 0
