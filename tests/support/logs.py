"""The root logger restored after a test that configures logging.

:func:`controller.logging_setup.configure_logging` (and so a ``picharge`` command run in
process through :func:`controller.cli.main`) sets the root logger's level and handlers for
the whole process, as a program should. Left so after a test, every later test in the same
worker captures INFO records it never asked for (``caplog`` counts them: tests of one log
line then see several) and logs into a closed capture stream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger; its handlers and level are put back as they were afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
