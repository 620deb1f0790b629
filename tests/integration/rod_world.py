"""Test helpers for ROD: a school's view of the API, and the RIO/BRP facts a test needs, made through the contract."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from common.caller import INSTITUTION_CODE, SANDBOX_KEY
from common.dates import to_proto_date
from registry.v1 import rod_pb2, rod_pb2_grpc


@dataclass(frozen=True)
class Offering:
    """Where a pupil can be enrolled: a school (BRIN), one of its locations and a course it offers there."""

    institution_code: str
    location_code: str
    course_code: str
    offering_id: str = ""


def period(offering: Offering, begin: dt.date, end: dt.date | None = None) -> rod_pb2.EnrolmentPeriod:
    return rod_pb2.EnrolmentPeriod(
        begin_date=to_proto_date(begin),
        end_date=to_proto_date(end),
        location_code=offering.location_code,
        course_code=offering.course_code,
    )


@dataclass
class School:
    """A school's administration package talking to ROD with its own x-institution-code."""

    channel: grpc.aio.Channel
    sandbox_key: str
    institution_code: str

    @property
    def rod(self) -> rod_pb2_grpc.RodServiceStub:
        return rod_pb2_grpc.RodServiceStub(self.channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((SANDBOX_KEY, self.sandbox_key), (INSTITUTION_CODE, self.institution_code))

    async def register(
        self,
        offering: Offering,
        begin: dt.date,
        *,
        bsn: str = "",
        onderwijsnummer: str = "",
        details: rod_pb2.PupilDetails | None = None,
        end: dt.date | None = None,
        key: str = "",
        document_id: str = "",
    ) -> rod_pb2.EnrolmentResponse:
        request = rod_pb2.RegisterEnrolmentRequest(
            idempotency_key=key,
            document_id=document_id or str(uuid.uuid4()),
            institution_code=self.institution_code,
            periods=[period(offering, begin, end)],
            sequence=1,
        )
        if bsn:
            request.pupil.bsn = bsn
        elif onderwijsnummer:
            request.pupil.onderwijsnummer = onderwijsnummer
        elif details is not None:
            request.pupil_details.CopyFrom(details)
        answer: rod_pb2.EnrolmentResponse = await self.rod.RegisterEnrolment(request, metadata=self.metadata)
        return answer


@dataclass
class FeedbackCollector:
    """Subscribes to a school's feedback stream in the background and collects what arrives."""

    school: School
    after_cursor: int = 0
    received: list[rod_pb2.Feedback] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> FeedbackCollector:
        call = self.school.rod.StreamFeedback(
            rod_pb2.StreamFeedbackRequest(after_cursor=self.after_cursor), metadata=self.school.metadata
        )
        self._task = asyncio.create_task(self._read(call))
        return self

    async def _read(self, call: AsyncIterator[rod_pb2.Feedback]) -> None:
        async for feedback in call:
            self.received.append(feedback)
            self._arrived.set()

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self._task

    async def until(self, predicate: object, within: float = 10.0) -> list[rod_pb2.Feedback]:
        """Waits until predicate(received) holds; returns received."""
        assert callable(predicate)
        deadline = asyncio.get_running_loop().time() + within
        while not predicate(self.received):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"feedback did not arrive in time; got {[f.cursor for f in self.received]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=min(remaining, 0.5))
        return self.received

    def for_enrolment(self, enrolment_id: str) -> list[rod_pb2.Feedback]:
        return [f for f in self.received if f.enrolment_id == enrolment_id]
