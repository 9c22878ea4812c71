"""Hypothesis against the temporal API: random and mutated times, durations, lastN, methods,
forms. Whatever arrives, the answer is 200/206 or a 400/404 ProblemDetails, never a 500."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
from hypothesis import given
from hypothesis import strategies as st

from citytwin.app import create_app
from citytwin.settings import Settings
from tests.api.test_query_fuzz import ERR, EXAMPLES, noise

CAR = "urn:ngsi-ld:Vehicle:1"
SPEED = [
    {"type": "Property", "value": v, "observedAt": f"2020-08-01T12:{m:02d}:00Z"}
    for v, m in [(120, 3), (80, 5), (100, 7), ("fast", 9), (True, 11)]
]
TIMES = [
    "2020-08-01T12:04:00Z",
    "2020-08-01T12:04:00.5+08:00",
    "2020-08-01",
    "1969-12-31T23:59:59Z",
]
DURATIONS = ["PT1H", "P1D", "P1M", "PT0S", "P1Y2M3DT4H5M6.5S", "P2W", "PT1.5H"]


class Twin:
    def __init__(self, runner: asyncio.Runner, client: httpx.AsyncClient) -> None:
        self.runner, self.client = runner, client

    def check(self, path: str, params: dict[str, str]) -> None:
        got = self.runner.run(asyncio.wait_for(self.client.get(path, params=params), 10))
        status = got.status_code
        assert status in (200, 206, 400, 404), (status, params, got.text[:300])
        body = got.json()
        if status >= 400:
            assert body["type"].startswith(ERR) and body["title"], body


@contextlib.contextmanager
def running_twin(database: str) -> Iterator[Twin]:
    with asyncio.Runner() as runner:
        stack = contextlib.AsyncExitStack()

        async def start() -> httpx.AsyncClient:
            db = database
            app = create_app(Settings(database=db, temporal_limit=3, mqtt="off"))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            client = httpx.AsyncClient(transport=transport, base_url="http://test/ngsi-ld/v1")
            await stack.enter_async_context(client)
            body = {"id": CAR, "type": "Vehicle", "speed": SPEED}
            assert (await client.post("/temporal/entities", json=body)).status_code == 201
            return client

        try:
            yield Twin(runner, runner.run(start()))
        finally:
            runner.run(stack.aclose())


def params() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "timerel": st.one_of(st.sampled_from(["before", "after", "between"]), noise(["after"])),
            "timeAt": st.one_of(st.sampled_from(TIMES), noise(TIMES)),
            "endTimeAt": st.one_of(st.sampled_from(TIMES), noise(TIMES)),
            "timeproperty": st.sampled_from(["observedAt", "createdAt", "modifiedAt", "deletedAt",
                                             "x"]),
            "lastN": st.one_of(st.integers(-2, 12).map(str), noise(["4"])),
            "aggrMethods": st.one_of(
                st.lists(st.sampled_from(["totalCount", "distinctCount", "sum", "avg", "min",
                                          "max", "stddev", "sumsq"]), min_size=1).map(",".join),
                noise(["avg,max"]),
            ),
            "aggrPeriodDuration": st.one_of(st.sampled_from(DURATIONS), noise(DURATIONS)),
            "options": st.sampled_from(["temporalValues", "aggregatedValues", "sysAttrs", "x"]),
            "format": st.sampled_from(["temporalValues", "aggregatedValues", "normalized", "x"]),
            "attrs": st.sampled_from(["speed", "speed,other", "other"]),
        },
    )  # fmt: skip


def test_retrieve_never_fails_badly(database_url: str) -> None:
    with running_twin(database_url) as twin:

        @EXAMPLES
        @given(params())
        def check(values: dict[str, str]) -> None:
            twin.check(f"/temporal/entities/{CAR}", values)

        check()


def test_query_never_fails_badly(database_url: str) -> None:
    with running_twin(database_url) as twin:

        @EXAMPLES
        @given(params())
        def check(values: dict[str, str]) -> None:
            twin.check("/temporal/entities", {"type": "Vehicle", **values})

        check()
