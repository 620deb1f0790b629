"""Per-key limits, request ids, response headers on streams, metrics and a port that is already served."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from services._gen.registry.v1 import common_pb2, rod_pb2, rod_pb2_grpc, sandbox_pb2, sandbox_pb2_grpc
from services.bootstrap import ALL_SERVICES, RunningSandbox, build
from services.common import telemetry
from services.common.caller import SANDBOX_KEY
from services.common.server import PortInUseError, RegistryServer
from services.common.settings import Settings
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import FeedbackCollector, rod_in


@pytest.fixture
async def limited(sqlite_url: str) -> AsyncIterator[tuple[RunningSandbox, grpc.aio.Channel, str]]:
    settings = Settings(
        database_url=sqlite_url,
        port=0,
        rate_limit_per_second=5,
        rate_limit_burst=5,
        streams_per_sandbox=2,
        shutdown_grace_seconds=0.2,
    )
    running = build(ALL_SERVICES, settings)
    await running.server.start()
    channel = grpc.aio.insecure_channel(running.server.address)
    created = await sandbox_pb2_grpc.SandboxAdminStub(channel).CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="x"))
    try:
        yield running, channel, created.sandbox_key
    finally:
        await channel.close()
        await running.server.stop(0.2)
        await running.peers.close()
        running.database.engine.dispose()


async def test_a_key_over_its_rate_gets_resource_exhausted_with_retry_info(
    limited: tuple[RunningSandbox, grpc.aio.Channel, str],
) -> None:
    _running, channel, key = limited
    stub = sandbox_pb2_grpc.SandboxAdminStub(channel)
    refused: list[grpc.aio.AioRpcError] = []
    for _ in range(12):
        try:
            await stub.GetClock(sandbox_pb2.GetClockRequest(), metadata=((SANDBOX_KEY, key),))
        except grpc.aio.AioRpcError as error:
            refused.append(error)
    assert refused, "12 calls at once against a limit of 5 a second must see refusals"
    assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    status = rpc_status.from_call(refused[0])
    assert status is not None
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert retry, "a rate-limited call says when to retry"
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert 0 < info.retry_delay.ToNanoseconds() <= 1_000_000_000
    # After the delay the key may call again.
    await asyncio.sleep(info.retry_delay.ToNanoseconds() / 1e9 + 0.25)
    await stub.GetClock(sandbox_pb2.GetClockRequest(), metadata=((SANDBOX_KEY, key),))


async def test_streams_per_sandbox_are_capped_and_a_closed_one_frees_its_place(
    limited: tuple[RunningSandbox, grpc.aio.Channel, str],
) -> None:
    _running, channel, key = limited
    await asyncio.sleep(1.2)  # let the rate bucket of the fixture's calls refill
    rod = rod_pb2_grpc.RodServiceStub(channel)
    metadata = ((SANDBOX_KEY, key),)
    first = rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=metadata)
    second = rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=metadata)
    # Response headers arrive at once, before any feedback: the subscription is live.
    for call in (first, second):
        headers = await asyncio.wait_for(call.initial_metadata(), timeout=5)
        assert dict(headers).get(telemetry.REQUEST_ID)
    third = rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(third.read(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    first.cancel()
    await asyncio.sleep(0.3)
    fourth = rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=metadata)
    await asyncio.wait_for(fourth.initial_metadata(), timeout=5)
    second.cancel()
    fourth.cancel()


async def test_the_request_id_comes_back_and_metrics_count_the_call(
    limited: tuple[RunningSandbox, grpc.aio.Channel, str],
) -> None:
    _running, channel, key = limited
    await asyncio.sleep(1.2)
    call = sandbox_pb2_grpc.SandboxAdminStub(channel).GetClock(
        sandbox_pb2.GetClockRequest(), metadata=((SANDBOX_KEY, key), (telemetry.REQUEST_ID, "trace-me-42"))
    )
    await call
    assert dict(await call.trailing_metadata())[telemetry.REQUEST_ID] == "trace-me-42"
    port = telemetry.serve_metrics("127.0.0.1", 0)
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    assert 'registry_calls_total{code="OK",method="/registry.v1.SandboxAdmin/GetClock"}' in body
    assert "registry_call_seconds_bucket" in body


def test_log_lines_are_json_with_the_request_id() -> None:
    stream = io.StringIO()
    telemetry.configure_logging()
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)  # type: ignore[attr-defined]
    token = telemetry.current_request_id.set("req-7")
    try:
        logging.getLogger("rod").warning("pupil %s re-evaluated", "999990019")
    finally:
        telemetry.current_request_id.reset(token)
        logging.getLogger().handlers.clear()
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["request_id"] == "req-7"
    assert line["message"] == "pupil 999990019 re-evaluated"
    assert line["level"] == "WARNING" and line["name"] == "rod"


async def test_a_second_server_on_a_served_port_fails_clearly(
    limited: tuple[RunningSandbox, grpc.aio.Channel, str],
) -> None:
    running, _channel, _key = limited
    with pytest.raises(PortInUseError, match="another sandbox"):
        RegistryServer([], "127.0.0.1", running.server.port)


async def test_metrics_count_brp_outcomes_outbox_size_and_stream_lag(sandbox: SandboxHarness) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    applied = sample("registry_brp_messages_total", outcome="applied")
    rod = await rod_in(sandbox, dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC))
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    bsn, second = [await rod.world.person(dt.date(2014, 5, 5)) for _ in range(2)]  # two BRP births, applied
    school = rod.school(offering)
    async with FeedbackCollector(school) as feed:
        first = await school.register(offering, dt.date(2027, 8, 15), bsn=bsn)
        await feed.until(lambda got: any(f.cursor == first.feedback_cursor for f in got))
        # The process's fan-out reader (which measures the lag) starts with the first subscription, at the
        # outbox's newest row: a registration that won the race with the stream's subscription reached the
        # school by the stream's own catch-up, unmeasured. Now the subscription stands, so the next one counts.
        lagged = sample("registry_stream_lag_seconds_count", stream="rod_feedback")
        answer = await school.register(offering, dt.date(2027, 8, 15), bsn=second)
        await feed.until(lambda got: any(f.cursor == answer.feedback_cursor for f in got))
    assert sample("registry_brp_messages_total", outcome="applied") >= applied + 2
    # The reader hands the row to the stream's queue and then records the lag: give it that moment.
    for _ in range(50):
        if sample("registry_stream_lag_seconds_count", stream="rod_feedback") >= lagged + 1:
            break
        await asyncio.sleep(0.1)
    assert sample("registry_stream_lag_seconds_count", stream="rod_feedback") >= lagged + 1
    assert sample("registry_outbox_rows", log="rod_feedback") >= answer.feedback_cursor
