"""Logging: journal fields through systemd-python's JournalHandler, stderr text, no secrets.

The journal tests run the real ``JournalHandler`` and the real ``systemd.journal.send``
(which turns keyword arguments into ``FIELD=value`` lines) and capture those lines at
``sendv``, the last step before journald's socket: no journald or ``journalctl`` needed.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import systemd.journal

from controller import logging_setup
from controller.logging_setup import (
    RedactSecrets,
    configure_logging,
    journal_handler,
    redact,
    stderr_handler,
    stderr_is_journal,
)


class JournalLines:
    """Every entry sent to the journal, as the FIELD=value lines journald would get."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def sendv(self, *lines: str | bytes) -> None:
        entry = {}
        for line in lines:
            text = line.decode() if isinstance(line, bytes) else line
            name, _, value = text.partition("=")
            entry[name] = value
        self.entries.append(entry)


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> JournalLines:
    lines = JournalLines()
    monkeypatch.setattr(systemd.journal, "sendv", lines.sendv)
    return lines


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("picharge.test")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.propagate = True


def _journal_fields(entry: dict[str, str]) -> dict[str, str]:
    """The fields of one entry, checked to be names journald accepts (uppercase letters,
    digits and underscores, not starting with an underscore): nothing else is sent."""
    for name in entry:
        assert re.fullmatch(r"[A-Z0-9][A-Z0-9_]*", name), f"invalid journal field {name!r}"
    return entry


def test_log_context_becomes_journal_fields_that_journalctl_can_match(
    journal: JournalLines, logger: logging.Logger
) -> None:
    logger.addHandler(journal_handler())
    logger.info(
        "transaction %s started",
        "42",
        extra={
            "connector": 1,
            "transaction_id": 42,
            "ocpp_action": "StartTransaction",
            "message_id": "0f9a2c3e-1b7d-4a55-9d2e-77c1b0e4f001",
            "id_tag": "04AABBCC",
        },
    )
    (entry,) = journal.entries
    fields = _journal_fields(entry)
    assert fields["MESSAGE"] == "picharge.test: transaction 42 started"
    assert fields["CONNECTOR"] == "1"
    assert fields["TRANSACTION_ID"] == "42"
    assert fields["OCPP_ACTION"] == "StartTransaction"
    assert fields["OCPP_MESSAGE_ID"] == "0f9a2c3e-1b7d-4a55-9d2e-77c1b0e4f001"
    assert fields["ID_TAG"] == "04AABBCC"
    assert fields["SYSLOG_IDENTIFIER"] == "picharge"
    assert fields["PRIORITY"] == "6"
    assert fields["LOGGER"] == "picharge.test"
    assert "MESSAGE_ID" not in fields  # journald's catalog id stays free


def test_frames_the_ocpp_library_logs_carry_their_action_and_message_id(
    journal: JournalLines,
) -> None:
    ocpp_log = logging.getLogger("ocpp")
    handler = journal_handler()
    ocpp_log.addHandler(handler)
    level = ocpp_log.level
    ocpp_log.setLevel(logging.INFO)
    try:
        ocpp_log.info("%s: send %s", "cp-1", '[2,"m-17","StartTransaction",{"connectorId":1}]')
        ocpp_log.info("%s: receive message %s", "cp-1", '[3,"m-17",{"transactionId":5}]')
    finally:
        ocpp_log.setLevel(level)
        ocpp_log.removeHandler(handler)
        handler.close()
    call, result = (_journal_fields(entry) for entry in journal.entries)
    assert call["OCPP_ACTION"] == "StartTransaction"
    assert call["OCPP_MESSAGE_ID"] == result["OCPP_MESSAGE_ID"] == "m-17"
    assert "OCPP_ACTION" not in result


def test_a_record_without_context_has_no_context_fields(
    journal: JournalLines, logger: logging.Logger
) -> None:
    logger.addHandler(journal_handler())
    logger.warning("meter offline")
    fields = _journal_fields(journal.entries[0])
    assert fields["PRIORITY"] == "4"
    assert not {"CONNECTOR", "TRANSACTION_ID", "OCPP_ACTION", "OCPP_MESSAGE_ID"} & set(fields)


def test_no_secret_reaches_any_journal_field(journal: JournalLines, logger: logging.Logger) -> None:
    handler = journal_handler(secrets=["s3cr3t-basic-auth-pw"])
    logger.addHandler(handler)
    logging_setup_secret = "A1B2C3D4E5F60718293A4B5C"
    for flt in handler.filters:
        if isinstance(flt, RedactSecrets):
            flt.add_secret(logging_setup_secret)
    frame = (
        '[2,"8c1a","ChangeConfiguration",{"key":"AuthorizationKey","value":"00112233445566778899"}]'
    )
    logger.info("%s: send %s", "cp-1", frame)
    logger.info("connecting to %s", "wss://cp-1:s3cr3t-basic-auth-pw@csms.example/ocpp/cp-1")
    logger.debug("> Authorization: Basic Y3AtMTpzM2NyM3QtYmFzaWMtYXV0aC1wdw==")
    try:
        raise ValueError(f"CSMS refused key {logging_setup_secret}")
    except ValueError:
        logger.exception("ChangeConfiguration failed", extra={"ocpp_action": "ChangeConfiguration"})
    everything = repr(journal.entries)
    for secret in (
        "00112233445566778899",
        "s3cr3t-basic-auth-pw",
        "Y3AtMTpzM2NyM3QtYmFzaWMtYXV0aC1wdw==",
        logging_setup_secret,
    ):
        assert secret not in everything
    messages = [_journal_fields(e)["MESSAGE"] for e in journal.entries]
    assert '"key":"AuthorizationKey","value":"***"' in messages[0]
    assert "wss://cp-1:***@csms.example/ocpp/cp-1" in messages[1]
    assert "Authorization: Basic ***" in messages[2]
    assert "ValueError: CSMS refused key ***" in messages[3]
    assert "CODE_ARGS" not in journal.entries[0]  # the raw arguments are not sent either


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"value": "0011aabb", "key": "authorizationkey"}',
            '{"value": "***", "key": "authorizationkey"}',
        ),
        ("[ocpp] password = 'hunter2 with spaces'", "[ocpp] password = '***'"),
        ('{"password": "x", "user": "y"}', '{"password": "***", "user": "y"}'),
        ("AuthorizationKey: 0011AABB", "AuthorizationKey: ***"),
        ("GET /ocpp?token=abc123&id=cp-1", "GET /ocpp?token=***&id=cp-1"),
        ("ws://csms.local:9000/ocpp/cp-1", "ws://csms.local:9000/ocpp/cp-1"),
        ("passenger count 3; bypass=on", "passenger count 3; bypass=on"),
        ("meter offline: no reply within 1 s", "meter offline: no reply within 1 s"),
    ],
)
def test_redaction_hides_secret_values_and_leaves_ordinary_text_alone(
    text: str, expected: str
) -> None:
    assert redact(text) == expected


def test_short_values_are_not_registered_as_secrets() -> None:
    flt = RedactSecrets(["1", "", "abcd"])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "1 abcd %s", ("1",), None)
    assert flt.filter(record)
    assert record.getMessage() == "1 *** 1"


def test_stderr_output_carries_the_context_in_brackets(logger: logging.Logger) -> None:
    stream = io.StringIO()
    logger.addHandler(stderr_handler(stream))
    logger.info("status Charging", extra={"connector": 2, "transaction_id": 7})
    logger.info("password=hunter22")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("INFO picharge.test: status Charging [connector=2 transaction_id=7]")
    assert lines[1].endswith("picharge.test: password=***")


def test_journal_is_detected_only_when_stderr_is_the_journal_stream(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        st = os.fstat(stream.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, stream)
        assert not stderr_is_journal({"INVOCATION_ID": "abc"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream)


def test_configure_logging_picks_level_and_target_and_never_stacks_handlers(
    root_logger: logging.Logger, journal: JournalLines
) -> None:
    handler = configure_logging(False, journal=True)
    assert isinstance(handler, systemd.journal.JournalHandler)
    assert root_logger.level == logging.INFO
    handler = configure_logging(True, journal=False)
    assert root_logger.handlers == [handler]
    assert root_logger.level == logging.DEBUG
    configure_logging(False, quiet=True, journal=False)
    assert root_logger.level == logging.WARNING
    assert len(root_logger.handlers) == 1


def test_secrets_added_after_configuration_are_redacted(
    root_logger: logging.Logger, journal: JournalLines
) -> None:
    configure_logging(False, journal=True)
    logging_setup.add_secret("CsmsAssignedKey0001")
    logging.getLogger("picharge.test.late").warning("booted with CsmsAssignedKey0001")
    assert _journal_fields(journal.entries[-1])["MESSAGE"].endswith("booted with ***")
