"""Pytest fixtures around :class:`controller.local_csms.LocalCsms` for end-to-end tests.

``tests/conftest.py`` loads them for every test (``pytest_plugins``); test modules import only
the tags and the ``MakeCsms`` type from here.

- ``csms``: a started LocalCsms with :data:`TEST_TAGS`, heartbeat interval 300 s.
- ``make_csms``: ``await make_csms(**kwargs)`` for other settings (boot_status="Pending",
  heartbeat_interval_s=1, ...); every CSMS it made is stopped after the test.

Both fail the test at teardown when a charge point broke OCPP 1.6J (schema violations,
timestamps without offset, calls while Rejected, ...: see ``LocalCsms.violations``). A test
that provokes a violation on purpose asserts on it and clears the list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from controller.local_csms import LocalCsms

ACCEPTED_TAG = "04A1B2C3"
BLOCKED_TAG = "BLOCKED1"
EXPIRED_TAG = "EXPIRED1"
UNKNOWN_TAG = "DEADBEEF"
#: The tag table of the test CSMS; any other tag is answered "Invalid".
TEST_TAGS = {ACCEPTED_TAG: "Accepted", BLOCKED_TAG: "Blocked", EXPIRED_TAG: "Expired"}

MakeCsms = Callable[..., Awaitable[LocalCsms]]


@pytest.fixture(name="make_csms")
async def make_csms_fixture() -> AsyncIterator[MakeCsms]:
    made: list[LocalCsms] = []

    async def make(**kwargs: Any) -> LocalCsms:
        kwargs.setdefault("authorized_tags", TEST_TAGS)
        kwargs.setdefault("call_timeout_s", 10.0)
        csms = LocalCsms(**kwargs)
        await csms.start()
        made.append(csms)
        return csms

    yield make
    for csms in made:
        await csms.stop()
    violations = [v for csms in made for v in csms.violations]
    assert not violations, "the charge point broke OCPP 1.6J:\n" + "\n".join(
        f"  {v.cp_id}: {v.problem} in {v.frame}" for v in violations
    )


@pytest.fixture(name="csms")
async def csms_fixture(make_csms: MakeCsms) -> LocalCsms:
    return await make_csms()
