"""The school-admin client's CSV: the sector columns reach the RegisterEnrolment request."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from clients.school_admin import EnrolmentLine, read_csv


def test_sector_columns_are_optional_and_read_in_upper_case(tmp_path: Path) -> None:
    path = tmp_path / "enrolments.csv"
    path.write_text(
        "bsn,location_code,course_code,begin_date,end_date,leerweg,intensity,study_mode\n"
        "999970008,100X001,25180,2027-08-20,,bbl,dt,\n"
        "999970021,100X002,34479,2027-09-01,2028-07-31,,,duaal\n"
    )
    assert read_csv(path) == [
        EnrolmentLine("999970008", "100X001", "25180", dt.date(2027, 8, 20), None, "BBL", "DT", ""),
        EnrolmentLine("999970021", "100X002", "34479", dt.date(2027, 9, 1), dt.date(2028, 7, 31), "", "", "DUAAL"),
    ]
    plain = tmp_path / "po.csv"
    plain.write_text("bsn,location_code,course_code,begin_date\n999970008,100X001,BAO,2027-08-20\n")
    assert read_csv(plain) == [EnrolmentLine("999970008", "100X001", "BAO", dt.date(2027, 8, 20))]
