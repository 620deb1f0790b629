"""Text no register can store is refused for any field, nested or repeated, naming the field."""

from __future__ import annotations

import grpc
import pytest

from services._gen.registry.v1 import rod_pb2
from services.common.errors import RegistryError
from services.common.request_guard import MAX_TEXT_LENGTH, refuse_hostile_text


def test_nul_anywhere_is_refused_with_the_field_path() -> None:
    request = rod_pb2.RegisterEnrolmentRequest(document_id="ok", institution_code="25\x00BE")
    request.periods.add(location_code="100X001", course_code="a\x00")
    with pytest.raises(RegistryError) as refused:
        refuse_hostile_text(request)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in refused.value.violations] == ["institution_code", "periods[0].course_code"]


def test_overlong_text_is_refused_and_ordinary_text_passes() -> None:
    refuse_hostile_text(rod_pb2.RegisterEnrolmentRequest(document_id="é" * MAX_TEXT_LENGTH))
    with pytest.raises(RegistryError) as refused:
        refuse_hostile_text(rod_pb2.RegisterEnrolmentRequest(document_id="x" * (MAX_TEXT_LENGTH + 1)))
    assert [v.field for v in refused.value.violations] == ["document_id"]
