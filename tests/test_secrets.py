"""Secrets stay secret (issue 12 section 5): the log redaction cannot be cut short by a quote
inside the value and leaves ordinary text alone, a rejected AuthorizationKey is never
logged, and the state directory is the service user's alone whatever the umask."""

from __future__ import annotations

import json
import logging
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ocpp.v16 import call

from controller.local_csms import LocalCsms
from controller.logging_setup import RedactSecrets, redact
from tests.support.security import captured_log
from tests.support.sim_app import controller
from tests.support.wait import until_sync

QUOTED_KEY = "Secret01234'56789ab"


@pytest.mark.parametrize(
    "text",
    [
        '{"key": "AuthorizationKey", "value": "Secret01234\'56789ab"}',
        '{"value": "Secret01234\'56789ab", "key": "AuthorizationKey"}',
        '[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"Secret\\"01234\'56789ab"}]',
        "{'key': 'AuthorizationKey', 'value': 'Secret01234\\'56789ab'}",
        "ChangeConfiguration(key='AuthorizationKey', value=\"Secret01234'56789ab\")",
        '{"password": "Secret01234\\"56789ab", "user": "cp"}',
    ],
)
def test_a_quote_inside_a_secret_does_not_cut_its_redaction_short(text: str) -> None:
    redacted = redact(text)
    assert "56789ab" not in redacted and "Secret" not in redacted
    assert "***" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "UpdateFirmware from secret: unsupported location",
        "UpdateFirmware from pass: unsupported location",
        "SignedUpdateFirmware from token: unsupported location",
        "ocpp.password: must be 16 to 40 ASCII characters (AuthorizationKey)",
        "the password: it is wrong",
    ],
)
def test_ordinary_text_is_not_mangled(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AuthorizationKey: 0011AABBCCDD", "AuthorizationKey: ***"),
        ("password=hunter2; user=cp", "password=***; user=cp"),
        ("[ocpp] password = 'a b c'", "[ocpp] password = '***'"),
        ("GET /ocpp?token=abc123&id=cp-1", "GET /ocpp?token=***&id=cp-1"),
        ("secret:abc123 in the header", "secret:*** in the header"),
    ],
)
def test_secret_pairs_are_still_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_websockets_frame_dumps_cut_in_the_middle_leave_the_payload_out() -> None:
    """websockets' debug line may cut the key name out and keep the value: no pattern could
    tell it is a secret. The ocpp library logs the whole frame (redacted) anyway."""
    flt = RedactSecrets()
    frame = '\'[2,"9982","Chan...lue":"Secret01234\\\'5"}]\''
    record = logging.LogRecord(
        "websockets.client", logging.DEBUG, __file__, 1, "< TEXT %s [115 bytes]", (frame,), None
    )
    assert flt.filter(record)
    assert record.getMessage() == "< TEXT (frame: see the ocpp line) [115 bytes]"


@pytest.mark.parametrize(
    "value",
    [
        "Secret01234'56789ab\u00e9",  # not ASCII: rejected by the key's own check
        "Secret01234'56789ab\x07",  # not printable
        "Secret01234'5",  # too short for an AuthorizationKey
    ],
)
async def test_a_rejected_authorization_key_is_never_logged(
    csms: LocalCsms, tmp_path: Path, value: str
) -> None:
    with captured_log() as log_text:
        logging.getLogger().setLevel(logging.DEBUG)  # every frame the ocpp library logs
        async with controller(csms, tmp_path) as rig:
            answer = await rig.cp_call(
                call.ChangeConfiguration(key="AuthorizationKey", value=value)
            )
            assert answer.status == "Rejected"
    text = log_text.getvalue()
    assert "ChangeConfiguration of AuthorizationKey to (secret: not shown) rejected" in text
    assert "Secret01234" not in text and "56789ab" not in text


PICHARGE = [sys.executable, "-m", "controller.cli"]


def sim(control: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``picharge sim ACTION`` against the controller listening on ``control``."""
    return subprocess.run(
        [*PICHARGE, "sim", "--control", control, *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def contactor_closed(control: str) -> bool:
    done = sim(control, "status")
    return done.returncode == 0 and json.loads(done.stdout)["connectors"][0]["contactor_closed"]


def test_the_state_directory_is_the_service_users_alone_whatever_the_umask(
    tmp_path: Path,
) -> None:
    """`picharge run` by hand, from a shell whose umask lets everyone read new files, in a
    state directory an older version left readable: afterwards nothing in it is."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / "leftover.txt").write_text("from an older version")
    (state / "leftover.txt").chmod(0o644)
    config = tmp_path / "config.toml"
    config.write_text('[authorization]\ncards = ["04AABBCC"]\n')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        control = f"127.0.0.1:{s.getsockname()[1]}"
    args = ["run", "--sim", "--config", str(config), "--state-dir", str(state)]
    process = subprocess.Popen(
        [*PICHARGE, *args, "--sim-speed", "60", "--sim-control", control],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        umask=0o022,
    )
    try:
        until_sync(lambda: sim(control, "status").returncode == 0, 20, what="the control port")
        for action in (["plug"], ["tap", "04AABBCC"], ["charge"]):  # a session: rows written
            assert sim(control, *action).returncode == 0
        until_sync(lambda: contactor_closed(control), 20, what="the contactor to close")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    modes = {
        str(path.relative_to(state)): stat.S_IMODE(path.lstat().st_mode)
        for path in [state, *state.rglob("*")]
        if not path.is_symlink()
    }
    assert {"picharge.db", "logs/picharge.log", "leftover.txt"} <= set(modes)
    expected = {p: 0o700 if (state / p).is_dir() else 0o600 for p in modes}
    assert {p: oct(m) for p, m in modes.items()} == {p: oct(m) for p, m in expected.items()}
