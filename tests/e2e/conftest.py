"""Fixtures of the end-to-end tests: keys, a fresh database, a fleet (the flushed Redis,
`redis_db`, is the root conftest's).

`database_url` gives each test an empty database of its own (see `fleet.fresh_database`):
a SQLite file, or a PostgreSQL schema when `DARKTOWER_TEST_DATABASE_URL` is set. `fleet` kills
every process the test started before that database is dropped, pass or fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from darktower.auth.keys import generate_key_files
from tests.e2e.browser import browser, page, viewport  # noqa: F401 - shared fixtures
from tests.e2e.fleet import Fleet, fresh_database


@pytest.fixture(scope="session")
def e2e_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`{gc,mc,mh}.key` / `.pub`, shared by every process of every e2e test."""
    out = tmp_path_factory.mktemp("e2e-keys")
    generate_key_files(out)
    return out


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database only this test uses."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def fleet(
    tmp_path: Path,
    e2e_keys: Path,
    redis_url: str,
    redis_db: redis.Redis,
    database_url: str,  # set up first, so dropped only after the fleet is killed
) -> Iterator[Fleet]:
    """A `Fleet` for this test; every process it started is killed afterwards, pass or fail,
    and the tails of their logs printed (pytest shows them for a failed test)."""
    with Fleet(tmp_path=tmp_path, key_dir=e2e_keys, redis_url=redis_url) as started:
        yield started
