"""`pull_available` (app/bus_asr_run.py) on a real nats-server: the ASR worker's pull takes the next
chunk as soon as it is on the server, together with whatever already waits behind it, and loses
nothing. Latency itself is measured by bench/bench_bus_live.py, not asserted here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bus_asr_run import pull_available
from app.bus_server import EmbeddedNats


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as nats_server:
        yield nats_server


async def _consumer(url: str) -> tuple[object, object, object]:
    import nats as nats_client
    from nats.js.api import ConsumerConfig, RetentionPolicy, StreamConfig

    nc = await nats_client.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PULLT", subjects=["pullt.>"], retention=RetentionPolicy.WORK_QUEUE))
    await js.add_consumer("PULLT", ConsumerConfig(durable_name="c", filter_subject="pullt.a"))
    sub = await js.pull_subscribe_bind("c", stream="PULLT")
    return nc, js, sub


def test_pull_takes_everything_waiting_in_order(server: EmbeddedNats) -> None:
    async def run() -> list[bytes]:
        nc, js, sub = await _consumer(server.url)
        for i in range(5):
            await js.publish("pullt.a", str(i).encode())  # type: ignore[attr-defined]
        got = await pull_available(sub, 16)
        for m in got:
            await m.ack()
        await nc.close()  # type: ignore[attr-defined]
        return [m.data for m in got]

    assert asyncio.run(run()) == [b"0", b"1", b"2", b"3", b"4"]


def test_pull_returns_a_chunk_published_while_it_waits_and_caps_the_batch(server: EmbeddedNats) -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        nc, js, sub = await _consumer(server.url)

        async def later() -> None:
            await asyncio.sleep(0.2)
            await js.publish("pullt.a", b"late")  # type: ignore[attr-defined]

        task = asyncio.create_task(later())
        first = await pull_available(sub, 16, wait_s=10.0)  # returns on the chunk, not after 10 s
        await task
        for i in range(4):
            await js.publish("pullt.a", str(i).encode())  # type: ignore[attr-defined]
        capped = await pull_available(sub, 3)
        rest = await pull_available(sub, 16)
        for m in first + capped + rest:
            await m.ack()
        await nc.close()  # type: ignore[attr-defined]
        return [m.data for m in first], [m.data for m in capped + rest]

    first, then = asyncio.run(run())
    assert first == [b"late"]
    assert then == [b"0", b"1", b"2", b"3"]


def test_pull_on_an_empty_consumer_times_out(server: EmbeddedNats) -> None:
    import nats.errors

    async def run() -> None:
        nc, _, sub = await _consumer(server.url)
        try:
            with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
                await pull_available(sub, 16, wait_s=0.3)
        finally:
            await nc.close()  # type: ignore[attr-defined]

    asyncio.run(run())
