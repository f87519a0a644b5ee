"""What the benchmarks' tests share: the PostgreSQL server the benchmarks make their databases on."""

from __future__ import annotations

import os

import pytest

from tests.conftest import BACKENDS


@pytest.fixture
def postgres_url() -> str:
    if "postgresql" not in BACKENDS:
        pytest.skip("the benchmark runs on PostgreSQL only (HUB_TEST_BACKENDS names no postgresql)")
    url = os.environ.get("HUB_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("HUB_TEST_BACKENDS names postgresql but HUB_TEST_POSTGRES_URL is unset")
    return url
