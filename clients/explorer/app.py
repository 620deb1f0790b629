"""The explorer's FastAPI application: the page, the JSON gateway, OpenAPI with /docs, the contract download."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import grpc
from fastapi import FastAPI, Header, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.middleware.trustedhost import TrustedHostMiddleware

from clients.explorer import contract, examples, trail
from clients.explorer.gateway import add_gateway_routes, bad_request, error_response
from clients.explorer.grpc_client import GrpcTargets, status_of
from clients.explorer.openapi import build_openapi
from clients.explorer.settings import ExplorerSettings
from services._gen.registry.v1 import sandbox_pb2, sandbox_pb2_grpc
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY

STATIC_DIR = Path(__file__).resolve().parent / "static"
SandboxKeyHeader = Annotated[str, Header(alias=SANDBOX_KEY)]


def _missing_key() -> JSONResponse:
    status = bad_request(SANDBOX_KEY, f"send the {SANDBOX_KEY} header (create a sandbox to get one)", "AUT401")
    status.code = grpc.StatusCode.UNAUTHENTICATED.value[0]
    return error_response(status)


def create_app(settings: ExplorerSettings | None = None) -> FastAPI:
    settings = settings or ExplorerSettings()
    targets = GrpcTargets(settings.grpc_address, dict(settings.service_addresses))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await targets.close()

    app = FastAPIOffline(
        title="Registry sandbox explorer",
        version="v1",
        lifespan=lifespan,
        redoc_url=None,
        swagger_ui_parameters={"persistAuthorization": True, "tryItOutEnabled": True},
    )
    # No CORS middleware on purpose: only pages served from here may call the gateway from a browser.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    add_gateway_routes(app, lambda: targets)
    openapi_document = build_openapi()
    app.openapi = lambda: openapi_document  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/contract.zip", include_in_schema=False)
    async def contract_zip() -> Response:
        return Response(
            contract.contract_zip(),
            media_type="application/zip",
            headers={"content-disposition": 'attachment; filename="registry-contract.zip"'},
        )

    @app.get("/explorer/contract", include_in_schema=False)
    async def describe() -> dict[str, Any]:
        # Only what a vendor sees: where the gRPC API answers (never a token: the explorer has none).
        return {**contract.describe(), "grpc_address": settings.grpc_address}

    @app.get("/explorer/examples", include_in_schema=False)
    async def example_requests(
        sandbox_key: SandboxKeyHeader = "",
        school: Annotated[str, Header(alias=INSTITUTION_CODE)] = "",
    ) -> Response:
        if not sandbox_key:
            return _missing_key()
        try:
            facts = await examples.gather_facts(targets, sandbox_key, school)
        except grpc.aio.AioRpcError as error:
            return error_response(status_of(error))
        return JSONResponse({"facts": examples.facts_json(facts), "examples": examples.build_examples(facts)})

    @app.get("/explorer/clock", include_in_schema=False)
    async def clock(sandbox_key: SandboxKeyHeader = "") -> Response:
        if not sandbox_key:
            return _missing_key()
        admin = sandbox_pb2_grpc.SandboxAdminStub(targets.channel("registry.v1.SandboxAdmin"))
        try:
            answer = await admin.GetClock(sandbox_pb2.GetClockRequest(), metadata=((SANDBOX_KEY, sandbox_key),))
        except grpc.aio.AioRpcError as error:
            return error_response(status_of(error))
        today = dt.date(answer.today.year, answer.today.month, answer.today.day)
        return JSONResponse(
            {
                "now": answer.now.ToJsonString(),
                "today": today.isoformat(),
                "frozen": answer.frozen,
                "count_dates": [
                    _count_dates("po", today, primary=True),
                    _count_dates("vo, mbo, ho", today, primary=False),
                ],
            }
        )

    @app.get("/explorer/trail", include_in_schema=False)
    async def cause_trail(
        cause_id: Annotated[str, Query(max_length=200)],
        sandbox_key: SandboxKeyHeader = "",
        trigger: Annotated[str, Query(max_length=60)] = "",
        bsn: Annotated[str, Query(max_length=9)] = "",
    ) -> Response:
        if not sandbox_key:
            return _missing_key()
        try:
            return JSONResponse(await trail.follow(targets, sandbox_key, cause_id, trigger, bsn))
        except trail.TrailError as error:
            return error_response(bad_request("cause_id", str(error)))
        except grpc.aio.AioRpcError as error:
            return error_response(status_of(error))

    return app


def _count_dates(sectors: str, today: dt.date, *, primary: bool) -> dict[str, str]:
    window = examples.upcoming_count(today, primary=primary)
    return {
        "sectors": sectors,
        "next_count_date": examples.count_date_on_or_after(today, primary=primary).isoformat(),
        "window_count_date": window.count_date.isoformat(),
        "correction_deadline": window.correction_deadline.isoformat(),
        "final_from": window.final_from.isoformat(),
    }
