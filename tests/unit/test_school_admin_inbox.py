"""The school-admin client's inbox: the cursor it resumes from survives a kill mid-write."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from clients.school_admin import _repair, last_cursor, read_csv


def test_an_empty_or_missing_inbox_resumes_from_the_start(tmp_path: Path) -> None:
    assert last_cursor(tmp_path / "missing.jsonl") == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert last_cursor(empty) == 0


def test_a_torn_last_line_is_dropped_and_the_cursor_is_the_last_whole_one(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox.jsonl"
    inbox.write_text(json.dumps({"cursor": 3}) + "\n" + json.dumps({"cursor": 7}) + "\n" + '{"cursor": 9, "fund')
    assert last_cursor(inbox) == 7
    _repair(inbox)
    assert inbox.read_text().endswith("\n") and last_cursor(inbox) == 7
    assert len(inbox.read_text().splitlines()) == 2


def test_csv_lines_with_and_without_end_date(tmp_path: Path) -> None:
    path = tmp_path / "enrolments.csv"
    path.write_text(
        "bsn,location_code,course_code,begin_date,end_date\n"
        "999999990,100X001,2101,2027-08-15,\n"
        "999999989,100X001,2101,2027-08-15,2028-07-31\n"
    )
    lines = read_csv(path)
    assert [line.end_date for line in lines] == [None, dt.date(2028, 7, 31)]
