"""The explorer's JSON gateway over real HTTP before a real sandbox: every method, statuses, details, SSE resume."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2
from openapi_spec_validator import validate

from clients.explorer import contract
from clients.explorer.gateway import HTTP_STATUS
from clients.explorer.grpc_client import metadata_from
from services.common.caller import INTERNAL_TOKEN, SANDBOX_ID
from tests.explorer_world import ExplorerWorld, explorer_world, read_events

ROD = "registry.v1.RodService"


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ExplorerWorld]:
    async with explorer_world(tmp_path_factory.mktemp("explorer")) as running:
        yield running


async def _school(world: ExplorerWorld) -> tuple[str, dict[str, Any]]:
    first = await world.examples()
    school = first["facts"]["institution_code"]
    assert school, "the seeded sandbox has a primary school with an offering"
    return school, await world.examples(school)


def _error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


def _detail(error: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(d for d in error["details"] if d["@type"].endswith(kind))


async def test_every_unary_method_answers_from_its_register(tmp_path: Path) -> None:
    """Each unary RPC, called with the example the page offers, is answered by the register behind it."""
    async with explorer_world(tmp_path) as world:
        school, examples = await _school(world)
        registered = await world.call(
            f"{ROD}/RegisterEnrolment", examples["examples"][f"{ROD}/RegisterEnrolment"], x_institution_code=school
        )
        assert registered.status_code == 200, registered.text
        # Reads and ROD before RIO ends the school, internal methods and the reset last.
        order = {"BrpService": 0, "RodService": 1, "RioService": 2, "SandboxAdmin": 3}
        unary = [m for m in contract.methods() if not m.streaming]
        unary.sort(
            key=lambda m: (
                m.internal,
                m.name == "ResetSandbox",
                order[m.service.rsplit(".", 1)[1]],
                m.name.startswith(("End", "Delete")),
            )
        )
        answers: dict[str, httpx.Response] = {}
        for method in unary:
            # Examples follow the sandbox (the enrolment's next sequence number), as the page reloads them.
            examples = (await world.examples(school))["examples"]
            school_header = {"x_institution_code": school} if method.service == ROD and not method.internal else {}
            answers[method.full_name] = await world.call(method.full_name, examples[method.full_name], **school_header)

    unreachable = {
        name: r.text for name, r in answers.items() if r.status_code in (404, 501, 503) and "error" not in r.json()
    }
    assert unreachable == {}
    unimplemented = [name for name, r in answers.items() if r.status_code == 501]
    assert unimplemented == []
    # Every public example works as it stands, except one the seed makes a duplicate: an offering that exists.
    refused = {
        name: _error(r)["message"]
        for name, r in answers.items()
        if r.status_code != 200 and not contract.by_path()[name].internal
    }
    assert set(refused) <= {"registry.v1.RioService/CreateCourseOffering"}, refused
    internal_refused = [
        name for name, r in answers.items() if contract.by_path()[name].internal and r.status_code != 200
    ]
    assert "registry.v1.BrpService/SeedRegister" in internal_refused
    assert answers["registry.v1.SandboxAdmin/GetClock"].json()["frozen"] in (True, False)


async def test_every_public_stream_example_opens_a_live_stream(world: ExplorerWorld) -> None:
    """The page's example for each server-streaming method opens its stream: 200 and text/event-stream,
    not an error status (the unary examples are the test above)."""
    school, examples = await _school(world)
    streams = [m for m in contract.methods() if m.streaming and not m.internal]
    assert streams, "the contract has public streams"
    opened: dict[str, str] = {}
    for method in streams:
        school_header = {"x_institution_code": school} if method.service == ROD else {}
        body = examples["examples"][method.full_name]
        url = f"/v1/{method.full_name}"
        async with world.http.stream("POST", url, json=body, headers=world.headers(**school_header)) as stream:
            if stream.status_code != 200:
                await stream.aread()
            opened[method.full_name] = f"{stream.status_code} {stream.headers.get('content-type', '')}"
            if stream.status_code != 200:
                opened[method.full_name] += f" {stream.text}"
    assert {name: answer for name, answer in opened.items() if not answer.startswith("200 text/event-stream")} == {}


async def test_statuses_map_as_google_maps_them_with_decoded_details(world: ExplorerWorld) -> None:
    missing_key = await world.http.post("/v1/registry.v1.SandboxAdmin/GetClock", json={})
    assert missing_key.status_code == 401
    assert _error(missing_key)["status"] == "UNAUTHENTICATED"
    assert _detail(_error(missing_key), "ErrorInfo")["reason"] == "AUT401"

    unknown = await world.call("registry.v1.RioService/GetLocation", {"code": "999X999"})
    assert unknown.status_code == 404
    error = _error(unknown)
    assert (error["status"], _detail(error, "ErrorInfo")["reason"]) == ("NOT_FOUND", "A01060")
    assert _detail(error, "BadRequest")["field_violations"][0]["field"] == "code"

    school, examples = await _school(world)
    other_school = next(s["institution_code"] for s in examples["facts"]["schools"] if s["institution_code"] != school)
    foreign = await world.call(
        f"{ROD}/RegisterEnrolment", examples["examples"][f"{ROD}/RegisterEnrolment"], x_institution_code=other_school
    )
    assert foreign.status_code == 403
    assert _detail(_error(foreign), "ErrorInfo")["reason"] == "AUT401"

    nowhere = dict(examples["examples"][f"{ROD}/RegisterEnrolment"])
    nowhere["periods"] = [{**nowhere["periods"][0], "location_code": "999X999"}]
    refused = await world.call(f"{ROD}/RegisterEnrolment", nowhere, x_institution_code=school)
    assert refused.status_code == 400
    error = _error(refused)
    assert error["status"] == "FAILED_PRECONDITION"
    assert _detail(error, "ErrorInfo")["reason"] == "A01060"
    assert _detail(error, "BadRequest")["field_violations"][0]["field"] == "periods[0].location_code"


async def test_bad_json_is_a_typed_400_naming_the_body(world: ExplorerWorld) -> None:
    not_json = await world.http.post(
        "/v1/registry.v1.RioService/GetLocation", content=b"{code:", headers=world.headers()
    )
    unknown_field = await world.call("registry.v1.RioService/GetLocation", {"cod": "100X001"})
    for answer in (not_json, unknown_field):
        assert answer.status_code == 400
        assert _error(answer)["status"] == "INVALID_ARGUMENT"
        assert _detail(_error(answer), "BadRequest")["field_violations"][0]["field"] == "body"
    assert "cod" in _error(unknown_field)["message"]


def test_the_status_table_is_google_api_design_guides() -> None:
    expected = {
        "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
        "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
        "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
        "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
    }  # fmt: skip
    assert {code.name: status for code, status in HTTP_STATUS.items()} == expected


async def _register(world: ExplorerWorld, school: str) -> str:
    example = (await world.examples(school))["examples"][f"{ROD}/RegisterEnrolment"]
    answer = await world.call(f"{ROD}/RegisterEnrolment", example, x_institution_code=school)
    assert answer.status_code == 200, answer.text
    enrolment_id: str = answer.json()["enrolment"]["enrolment_id"]
    return enrolment_id


async def test_sse_resumes_after_a_disconnect_with_no_gap_and_no_duplicate(world: ExplorerWorld) -> None:
    school, _ = await _school(world)
    url = f"/v1/{ROD}/StreamFeedback"
    headers = world.headers(x_institution_code=school)
    body = {"institution_codes": [school]}
    already = (await world.call(f"{ROD}/ListFeedback", {"institution_code": school}, x_institution_code=school)).json()
    start = max((int(f["cursor"]) for f in already["feedback"]), default=0)
    first_two: list[str] = []
    async with world.http.stream("POST", url, json=body, headers={**headers, "last-event-id": str(start)}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for _ in range(2):
            first_two.append(await _register(world, school))
        events = await asyncio.wait_for(read_events(stream, 2), 10)
    # The connection is gone; more feedback commits meanwhile.
    later = [await _register(world, school) for _ in range(2)]
    last_id = events[-1].id
    assert last_id is not None
    async with world.http.stream("POST", url, json=body, headers={**headers, "last-event-id": last_id}) as stream:
        resumed = await asyncio.wait_for(read_events(stream, 2), 10)

    assert [e.data["enrolment_id"] for e in events] == first_two
    assert [e.data["enrolment_id"] for e in resumed] == later
    cursors = [int(e.id or 0) for e in [*events, *resumed]]
    assert cursors == sorted(set(cursors)), "event ids are the stream's cursors, strictly increasing"
    assert all(e.id == e.data["cursor"] for e in [*events, *resumed])


async def test_a_stream_that_fails_at_once_gets_an_http_status_not_an_empty_stream(world: ExplorerWorld) -> None:
    answer = await world.http.post(f"/v1/{ROD}/StreamFeedback", json={})
    assert answer.status_code == 401
    assert _error(answer)["status"] == "UNAUTHENTICATED"
    bad_resume = await world.http.post(
        f"/v1/{ROD}/StreamFeedback", json={}, headers={**world.headers(), "last-event-id": "yesterday"}
    )
    assert bad_resume.status_code == 400
    assert _detail(_error(bad_resume), "BadRequest")["field_violations"][0]["field"] == "last-event-id"


async def test_the_internal_token_is_never_forwarded(world: ExplorerWorld) -> None:
    token = world.running.settings.internal_token
    sandbox_id = (await world.call("registry.v1.SandboxAdmin/GetSandbox")).json()["sandbox_id"]
    assert metadata_from({INTERNAL_TOKEN: token, SANDBOX_ID: sandbox_id, "x-sandbox-key": "k"}) == (
        ("x-sandbox-key", "k"),
    )
    # With the real token and sandbox id as headers, the internal-only call is still a vendor's call: refused.
    answer = await world.http.post(
        "/v1/registry.v1.BrpService/PurgeSandbox",
        json={"idempotency_key": "x"},
        headers={INTERNAL_TOKEN: token, SANDBOX_ID: sandbox_id},
    )
    assert answer.status_code == 401
    page = await world.http.get("/explorer/contract")
    assert token not in page.text


async def test_no_cors_and_only_loopback_host_names(world: ExplorerWorld) -> None:
    answer = await world.http.post(
        "/v1/registry.v1.SandboxAdmin/GetClock", headers={**world.headers(), "origin": "https://evil.example"}
    )
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers
    preflight = await world.http.options(
        "/v1/registry.v1.SandboxAdmin/CreateSandbox",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    rebound = await world.http.get("/", headers={"host": "evil.example"})
    assert rebound.status_code == 400


async def test_openapi_is_valid_3_1_with_every_method_and_field_comments(world: ExplorerWorld) -> None:
    spec = (await world.http.get("/openapi.json")).json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {m.http_path for m in contract.methods()}
    fields = spec["components"]["schemas"]["registry.v1.RegisterEnrolmentRequest"]["properties"]
    assert "UUID" in fields["document_id"]["description"]
    stream = spec["paths"][f"/v1/{ROD}/StreamFeedback"]["post"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    docs = await world.http.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    # Swagger UI's assets come from this server, not a CDN.
    assert "cdn.jsdelivr" not in docs.text
    asset = await world.http.get("/static-offline-docs/swagger-ui-bundle.js")
    assert asset.status_code == 200


async def test_the_contract_download_compiles_alone(world: ExplorerWorld, tmp_path: Path) -> None:
    archive = zipfile.ZipFile(io.BytesIO((await world.http.get("/contract.zip")).content))
    archive.extractall(tmp_path)
    names = set(archive.namelist())
    assert {
        "proto/registry/v1/rod.proto",
        "proto/google/type/date.proto",
        "proto/google/rpc/error_details.proto",
    } <= names
    assert {"proto/grpc/reflection/v1/reflection.proto", "proto/grpc/health/v1/health.proto"} <= names
    protos = sorted(str(p.relative_to(tmp_path / "proto")) for p in (tmp_path / "proto").rglob("*.proto"))
    # protoc with only the download as include path (no well-known-type fallback): the bundle is complete.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "import sys; from grpc_tools import protoc; sys.exit(protoc.main(sys.argv))",
         "-Iproto", "--descriptor_set_out=out.pb", *protos],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


async def test_server_reflection_answers_as_v1_and_v1alpha(world: ExplorerWorld) -> None:
    channel = grpc.aio.insecure_channel(world.running.server.address)
    try:
        listed = {}
        for version in ("v1", "v1alpha"):
            call = channel.stream_stream(
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            listed[version] = {s.name async for r in call for s in r.list_services_response.service}
        described = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection")]))
        files = [r.file_descriptor_response for r in [r async for r in described]]
    finally:
        await channel.close()
    assert listed["v1"] == listed["v1alpha"]
    assert {"registry.v1.RodService", "grpc.reflection.v1.ServerReflection"} <= listed["v1"]
    assert files and files[0].file_descriptor_proto


async def test_the_cause_trail_leads_from_a_brp_message_to_the_feedback_at_the_school(world: ExplorerWorld) -> None:
    school, _ = await _school(world)
    await _register(world, school)
    death = (await world.examples(school))["examples"]["registry.v1.BrpService/SubmitChanges"]
    submitted = await world.call("registry.v1.BrpService/SubmitChanges", death)
    assert submitted.json()["results"][0]["outcome"] == "MESSAGE_OUTCOME_APPLIED", submitted.text
    message_id = submitted.json()["results"][0]["message_id"]
    trail: dict[str, Any] = {}
    for _ in range(50):  # ROD follows BRP's change stream: the feedback lands a moment later
        trail = (
            await world.http.get(
                "/explorer/trail",
                params={"cause_id": message_id, "trigger": "FEEDBACK_TRIGGER_BRP_CHANGE"},
                headers=world.headers(),
            )
        ).json()
        if trail["feedback"]:
            break
        await asyncio.sleep(0.1)
    assert trail["cause"]["kind"] == "brp_message"
    assert trail["cause"]["event"]["event_type"] == "PERSON_EVENT_TYPE_DEATH"
    assert trail["schools"] == [school]
    assert {f["cause"]["id"] for f in trail["feedback"]} == {message_id}
    assert any(s["code"] == "SBX-PUPIL-DECEASED" for f in trail["feedback"] for s in f["signals"])
