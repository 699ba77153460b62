"""Where the log goes: the journal with structured fields under systemd, stderr otherwise.

Under systemd (stderr is the journal stream, ``JOURNAL_STREAM``) records go through
``systemd.journal.JournalHandler`` with ``SYSLOG_IDENTIFIER=picharge``. A log call's
context, given as ``extra``, becomes journal fields that can be matched on::

    log.info("transaction started", extra={"connector": 1, "transaction_id": 42})
    # journalctl -u picharge CONNECTOR=1      journalctl -u picharge TRANSACTION_ID=42

==================  ==================  ==============================================
``extra`` key       journal field       what
==================  ==================  ==============================================
``connector``       ``CONNECTOR``       connector id (1, 2, ...)
``transaction_id``  ``TRANSACTION_ID``  the CSMS's transaction id (or our local one)
``ocpp_action``     ``OCPP_ACTION``     e.g. ``StartTransaction``
``message_id``      ``OCPP_MESSAGE_ID`` the OCPP-J unique id of the call
``id_tag``          ``ID_TAG``          the card or id tag
==================  ==================  ==============================================

The OCPP message id goes to ``OCPP_MESSAGE_ID``, not ``MESSAGE_ID``: journald reserves
``MESSAGE_ID`` for a 128-bit id of the message *type* (the catalog, ``journalctl -x``).

Secrets never reach a log: :class:`RedactSecrets` sits on the handler, so every record of
every library (the ``ocpp`` library logs whole frames, including ChangeConfiguration of
``AuthorizationKey``) is scrubbed of known secret values, ``AuthorizationKey`` values,
``password=...``-style pairs (a quoted value up to its closing quote, escapes honoured; an
unquoted one only after ``=``, or after a colon with no space, since ``password: ...`` is as
often prose), HTTP Basic credentials and passwords in URLs, in the message, its arguments
and its exception text. websockets' debug lines of frames leave the payload out: they cut
it in the middle, which no pattern can redact reliably.

Outside systemd the same records go to stderr, with the fields appended in brackets, and
(:func:`add_log_file`, once the state directory is known) to a rotating file
``<state_dir>/logs/picharge.log`` (1 MB, 5 old files) with UTC ISO timestamps, which
GetDiagnostics collects (:mod:`controller.csms.diagnostics`); under systemd the journal is
the log and that file is not written.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

#: ``extra`` keys that become journal fields, and the field each becomes.
FIELDS: dict[str, str] = {
    "connector": "CONNECTOR",
    "transaction_id": "TRANSACTION_ID",
    "ocpp_action": "OCPP_ACTION",
    "message_id": "OCPP_MESSAGE_ID",
    "id_tag": "ID_TAG",
}
SYSLOG_IDENTIFIER = "picharge"
REDACTED = "***"
STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(picharge_context)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"
#: The log file outside systemd: UTC timestamps (``2026-11-23T15:56:16.123Z``) so that a
#: diagnostics time window can be cut from it whatever the Pi's time zone.
LOGS_DIR = "logs"  # under the state directory
LOG_FILE_NAME = "picharge.log"
LOG_FILE_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s%(picharge_context)s"
LOG_FILE_DATEFMT = "%Y-%m-%dT%H:%M:%S"
LOG_FILE_BYTES = 1_000_000
LOG_FILE_BACKUPS = 5

_SECRET_KEYS = r"(?:password|passwd|pass|secret|token|authorization_?key|auth_?key)"
#: Names that only ever mean a secret: ``AuthorizationKey: x`` is redacted even with a space
#: after the colon, where ``password: x`` may be prose ("ocpp.password: must be ...").
_KEY_NAMES = r"(?:authorization_?key|auth_?key)"
#: A quoted value, to its closing quote: the opening quote is group ``q``; a backslash
#: escapes the next character (JSON's \", Python's \'), so a quote inside cannot end it.
_QUOTED = r"""(?P<q>["'])(?:\\.|(?!(?P=q)).)*(?P=q)"""
#: ``key``/``value`` as a JSON member, a dict item or a keyword argument.
_FIELD = r"""["']?\b{}["']?\s*[:=]\s*"""
_AUTH_KEY_FIELD = _FIELD.format("key") + r"""["']authorizationkey["']"""
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # OCPP: {"key": "AuthorizationKey", "value": "..."} in either order (CiString: any case),
    # as JSON, as a dict repr or as keyword arguments.
    (
        re.compile(rf"({_AUTH_KEY_FIELD}[^{{}}]*?{_FIELD.format('value')}){_QUOTED}", re.I),
        r"\g<1>\g<q>" + REDACTED + r"\g<q>",
    ),
    (
        re.compile(rf"({_FIELD.format('value')}){_QUOTED}(?=[^{{}}]*?{_AUTH_KEY_FIELD})", re.I),
        r"\g<1>\g<q>" + REDACTED + r"\g<q>",
    ),
    # "password": "x y", password = 'x', 'authorization_key': "x" (quoted values)
    (
        re.compile(rf"""(\b{_SECRET_KEYS}["']?\s*[:=]\s*){_QUOTED}""", re.IGNORECASE),
        r"\g<1>\g<q>" + REDACTED + r"\g<q>",
    ),
    # password=x, token = x, ?token=x&..., secret:x, AuthorizationKey: x (unquoted values);
    # "password: x" with a space after the colon is prose, not a pair
    (
        re.compile(
            rf"""(\b{_SECRET_KEYS}["']?(?:\s*=\s*|:)|\b{_KEY_NAMES}["']?\s*:\s*)"""
            r"""[^\s"',;}&)]+""",
            re.IGNORECASE,
        ),
        r"\g<1>" + REDACTED,
    ),
    # Authorization: Basic dXNlcjpwYXNz
    (
        re.compile(r"(\bauthorization\b[\"']?\s*[:=]\s*[\"']?basic\s+)[A-Za-z0-9+/=]+", re.I),
        r"\g<1>" + REDACTED,
    ),
    # wss://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE), r"\g<1>***@"),
)


#: websockets' DEBUG lines show a frame cut in the middle (``> TEXT '[2,"1","Chan...lue":"x"}]'
#: [115 bytes]``): the cut may take the key name and keep the secret value, so no pattern can
#: tell. The payload is left out; the ocpp library logs every frame whole (and redacted).
_WEBSOCKETS_FRAME = re.compile(rf"""(\b(?:TEXT|BINARY)\s+){_QUOTED}""")
FRAME_LEFT_OUT = "(frame: see the ocpp line)"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value and every secret-looking pair replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Scrubs each record before any handler formats it; never drops one.

    The message is rendered here (``msg % args``) and replaced by its redacted form, and the
    arguments cleared, because the journal handler would otherwise also send the raw
    arguments (``CODE_ARGS``) and the raw exception (``EXCEPTION_INFO``). The exception
    text is rendered and redacted here for the same reason.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add_secret(secret)
        self._formatter = logging.Formatter()

    def add_secret(self, value: str | None) -> None:
        """Redact ``value`` wherever it appears from now on; short values (< 4) are ignored,
        since replacing every "1" in the log would hide more than it protects."""
        if value and len(value) >= 4:
            self._secrets.add(value)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name.startswith("websockets"):
            message = _WEBSOCKETS_FRAME.sub(r"\g<1>" + FRAME_LEFT_OUT, message)
        record.msg = redact(message, self._secrets)
        record.args = None
        if record.exc_info:
            text = record.exc_text or self._formatter.formatException(record.exc_info)
            record.exc_text = redact(text, self._secrets)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        for key in FIELDS:
            value = record.__dict__.get(key)
            if isinstance(value, str):
                record.__dict__[key] = redact(value, self._secrets)
        return True


class StructuredFields(logging.Filter):
    """Copies the ``extra`` keys of :data:`FIELDS` onto the record as journal field names,
    and renders them for text output as ``picharge_context`` (`` [connector=1 ...]``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "ocpp" and "ocpp_action" not in record.__dict__:
            _fields_from_frame(record)
        context = []
        for key, field in FIELDS.items():
            value = record.__dict__.get(key)
            if value is None:
                continue
            record.__dict__[field] = str(value)
            context.append(f"{key}={value}")
        record.__dict__["picharge_context"] = f" [{' '.join(context)}]" if context else ""
        return True


_FRAME = re.compile(r'\[\s*([234])\s*,\s*"([^"]{1,36})"\s*(?:,\s*"([A-Za-z]+)")?')


def _fields_from_frame(record: logging.LogRecord) -> None:
    """The ocpp library logs every frame it sends or receives ("%s: send %s"): take the
    message id and, for a CALL, the action from it, so ``journalctl OCPP_ACTION=...`` finds
    both the call and (by OCPP_MESSAGE_ID) its answer."""
    match = _FRAME.search(record.getMessage())
    if match is not None:
        record.__dict__["message_id"] = match.group(2)
        if match.group(1) == "2" and match.group(3):
            record.__dict__["ocpp_action"] = match.group(3)


def stderr_is_journal(environ: dict[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """True when stderr is connected to the journal (``JOURNAL_STREAM`` names its
    device:inode), the test systemd.exec(5) recommends before switching to the native
    journal protocol."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError):
        return False
    return stat.st_dev == int(device) and stat.st_ino == int(inode)


_JOURNAL_FIELD = re.compile(r"[A-Z0-9][A-Z0-9_]*")


def _journal_fields_only(send: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``send`` so that only valid journal field names go out.

    ``JournalHandler`` passes every attribute of the record (``msg``, ``args``,
    ``levelname``, ...); journald would drop those lowercase names anyway, so they are
    dropped here instead of crossing the socket with every line.
    """

    def sender(message: str, /, **fields: Any) -> Any:
        return send(message, **{k: v for k, v in fields.items() if _JOURNAL_FIELD.fullmatch(k)})

    return sender


def journal_handler(
    sender: Callable[..., Any] | None = None, secrets: Iterable[str] = ()
) -> logging.Handler:
    """A ``JournalHandler`` that sends our structured fields and redacts secrets.

    ``sender`` replaces ``systemd.journal.send`` (``MESSAGE`` positional, fields as keyword
    arguments).
    """
    from systemd.journal import JournalHandler, send

    handler: logging.Handler = JournalHandler(
        sender_function=_journal_fields_only(sender or send), SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER
    )
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(StructuredFields())
    handler.setFormatter(logging.Formatter(JOURNAL_FORMAT))
    return handler


def stderr_handler(stream: TextIO | None = None, secrets: Iterable[str] = ()) -> logging.Handler:
    """Plain text on stderr, fields appended, secrets redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(StructuredFields())
    handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    return handler


def configure_logging(
    verbose: bool,
    *,
    quiet: bool = False,
    journal: bool | None = None,
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """Set up the root logger once per process; returns the handler installed.

    Level: DEBUG with ``verbose``, WARNING with ``quiet`` (``demo``, ``check-hw``: their
    own output is on stdout), INFO otherwise. ``journal`` None means: the journal when
    stderr is the journal stream (under systemd), else stderr. Handlers installed earlier
    are replaced, so calling it again (a re-exec, tests) does not duplicate lines.
    """
    use_journal = stderr_is_journal() if journal is None else journal
    handler = journal_handler(secrets=secrets) if use_journal else stderr_handler(secrets=secrets)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    return handler


def add_secret(value: str | None) -> None:
    """Redact ``value`` in every handler :func:`configure_logging` installed (e.g. the OCPP
    password or AuthorizationKey, once the configuration is loaded or changed)."""
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactSecrets):
                flt.add_secret(value)


def under_systemd(environ: dict[str, str] | None = None) -> bool:
    """True when systemd started this process (``INVOCATION_ID``) or stderr is the journal."""
    env = dict(os.environ) if environ is None else environ
    return bool(env.get("INVOCATION_ID")) or stderr_is_journal(env)


class _LogFile(logging.handlers.RotatingFileHandler):
    """The rotating log file (a class of its own so that it can be found and replaced)."""


def add_log_file(directory: Path, secrets: Iterable[str] = ()) -> logging.Handler:
    """Also log to ``directory/picharge.log`` (rotating, UTC timestamps, secrets redacted).

    Replaces a log file added before (a re-exec, another state directory in tests); the
    caller removes it with :func:`remove_log_file` when it stops. Blocking file I/O on each
    record, as with stderr: lines are short and the file is local.
    """
    directory.mkdir(parents=True, exist_ok=True)
    handler = _LogFile(
        directory / LOG_FILE_NAME,
        maxBytes=LOG_FILE_BYTES,
        backupCount=LOG_FILE_BACKUPS,
        encoding="utf-8",
    )
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(StructuredFields())
    formatter = logging.Formatter(LOG_FILE_FORMAT, LOG_FILE_DATEFMT)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LogFile)]:
        remove_log_file(old)
    root.addHandler(handler)
    return handler


def remove_log_file(handler: logging.Handler) -> None:
    """Stop logging to a file :func:`add_log_file` opened; idempotent."""
    logging.getLogger().removeHandler(handler)
    handler.close()
