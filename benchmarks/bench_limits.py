"""The bare limits of this machine with the project's libraries, measured in the same run as the project's figures.

    python -m benchmarks limits
    REGISTRY_BENCH_DATABASE_URL=postgresql://... python -m benchmarks limits   # PostgreSQL limits too

grpc.aio unary calls/s (one client, 32 concurrent) and server-stream
messages/s (one stream, ten streams) against a handler that does nothing;
SQLite single-row commits/s and batched rows/s (the project's engine settings:
WAL, synchronous NORMAL); PostgreSQL commits/s on one and on eight
connections and COPY rows/s; lxml parse + XSD validation of BRP messages/s with
the project's schema. Each runs for about two seconds or a fixed count.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psycopg
from lxml import etree
from sqlalchemy import text

from benchmarks.backend import BENCH_DATABASE_ENV
from benchmarks.results import record
from services.common.database import make_engine, scratch_postgresql_database
from services.common.settings import Settings

SECONDS = 2.0
SCHEMA = Path(__file__).resolve().parent.parent / "services" / "brp_sync" / "schema" / "brp-mutatie.xsd"
BRP_NS = "urn:registry-sandbox:brp:mutatie:v2"
PAYLOAD = b"x" * 100


# --- gRPC ---


async def _unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for _ in range(int(request.decode() or "0")):
        yield PAYLOAD


async def grpc_limits() -> None:
    server = grpc.aio.server()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Bare", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary("/bench.Bare/Unary")
            stream = channel.unary_stream("/bench.Bare/Stream")

            async def calls_for(seconds: float) -> int:
                done = 0
                deadline = time.perf_counter() + seconds
                while time.perf_counter() < deadline:
                    await unary(PAYLOAD)
                    done += 1
                return done

            for clients in (1, 32):
                started = time.perf_counter()
                counts = await asyncio.gather(*(calls_for(SECONDS) for _ in range(clients)))
                rate = sum(counts) / (time.perf_counter() - started)
                record(f"limit: grpc.aio unary calls/s, {clients} concurrent", rate, "calls/s")

            async def read(count: int) -> int:
                received = 0
                async for _ in stream(str(count).encode()):
                    received += 1
                return received

            for streams, each in ((1, 50_000), (10, 10_000)):
                started = time.perf_counter()
                total = sum(await asyncio.gather(*(read(each) for _ in range(streams))))
                rate = total / (time.perf_counter() - started)
                record(f"limit: grpc.aio stream messages/s, {streams} streams", rate, "messages/s")
    finally:
        await server.stop(0)


# --- databases ---


def sqlite_limits() -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'limits.db'}")
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE bench (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
        commits = 0
        started = time.perf_counter()
        while time.perf_counter() - started < SECONDS:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO bench (body) VALUES (:body)"), {"body": "x" * 100})
            commits += 1
        record("limit: SQLite single-row commits/s", commits / (time.perf_counter() - started), "commits/s")
        rows = [{"body": "x" * 100} for _ in range(100_000)]
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO bench (body) VALUES (:body)"), rows)
        record("limit: SQLite batched rows/s", len(rows) / (time.perf_counter() - started), "rows/s")
        engine.dispose()


def postgresql_limits(server_url: str) -> None:
    with scratch_postgresql_database(Settings(database_url=server_url).database_url, "registry_limits") as url:
        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute("CREATE TABLE bench (id bigserial PRIMARY KEY, body text NOT NULL)")

        def commit_loop(counts: list[int], index: int, deadline: float) -> None:
            with psycopg.connect(conninfo) as connection:
                while time.perf_counter() < deadline:
                    connection.execute("INSERT INTO bench (body) VALUES (%s)", ("x" * 100,))
                    connection.commit()
                    counts[index] += 1

        for connections in (1, 8):
            counts = [0] * connections
            started = time.perf_counter()
            deadline = started + SECONDS
            threads = [threading.Thread(target=commit_loop, args=(counts, i, deadline)) for i in range(connections)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rate = sum(counts) / (time.perf_counter() - started)
            record(f"limit: PostgreSQL commits/s, {connections} connections", rate, "commits/s")
        rows = 200_000
        with psycopg.connect(conninfo) as connection:
            started = time.perf_counter()
            with connection.cursor() as cursor, cursor.copy("COPY bench (body) FROM STDIN") as copy:
                for _ in range(rows):
                    copy.write_row(("x" * 100,))
            connection.commit()
            record("limit: PostgreSQL COPY rows/s", rows / (time.perf_counter() - started), "rows/s")


# --- XML ---


def brp_message(index: int) -> bytes:
    return (
        f'<Mutatie xmlns="{BRP_NS}"><BerichtId>{uuid.UUID(int=index)}</BerichtId>'
        f"<Burgerservicenummer>999990019</Burgerservicenummer><Anummer>3620692481</Anummer>"
        f"<Versienummer>0</Versienummer><Volgnummer>{index + 1}</Volgnummer>"
        f"<Gemeentecode>0363</Gemeentecode><Gebeurtenis>nl.brp.ingeschreven</Gebeurtenis><Onderwerp>geboorte</Onderwerp>"
        f"<DatumIngang>2020-03-01</DatumIngang><Wijzigingen><Persoon><Voornamen>Kim</Voornamen>"
        f"<Geslachtsnaam>Bakker</Geslachtsnaam><Geboortedatum>2020-03-01</Geboortedatum><Geslacht>O</Geslacht>"
        f"</Persoon></Wijzigingen></Mutatie>"
    ).encode()


def lxml_limit() -> None:
    schema = etree.XMLSchema(etree.parse(str(SCHEMA)))
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    documents = [brp_message(i) for i in range(20_000)]
    started = time.perf_counter()
    valid = 0
    for document in documents:
        valid += schema.validate(etree.fromstring(document, parser))
    assert valid == len(documents), "the bench message must be valid against the project's XSD"
    record("limit: lxml parse + XSD validation messages/s", len(documents) / (time.perf_counter() - started), "msg/s")


def main() -> None:
    asyncio.run(grpc_limits())
    sqlite_limits()
    server = os.environ.get(BENCH_DATABASE_ENV, "")
    if server:
        postgresql_limits(server)
    lxml_limit()
