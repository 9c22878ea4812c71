"""A throwaway PostgreSQL cluster with PostGIS for the tests that need one (.ci/run installs it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.cluster import installed, postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One cluster for the whole session (each test makes its own database)."""
    if not installed():
        pytest.fail("PostgreSQL 15 with PostGIS is not installed (./run test installs it)")
    with postgres() as url:
        yield url
