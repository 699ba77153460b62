"""Moving one file to or from a server named by a URL: HTTP, HTTPS or FTP.

Used by diagnostics uploads and firmware downloads (OCPP GetDiagnostics, UpdateFirmware), and
free of OCPP. Every function here blocks (sockets): call it through ``asyncio.to_thread``.

- Download: ``GET`` over HTTP(S) (urllib, redirects followed, the system's CA store for
  HTTPS) or ``RETR`` over FTP (ftplib, passive mode, anonymous unless the URL carries
  ``user:password@``). Anything but a 2xx answer is a :class:`TransferError`. A download
  bounded by ``max_bytes`` stops as soon as it would exceed it (an HTTP answer whose
  Content-Length is beyond it, before the first byte): :class:`TooLarge`,
  the partial file removed.
- Upload over HTTP(S): ``POST`` of ``multipart/form-data`` with one part, field ``file``,
  whose filename is the file's name (the form most upload endpoints and CSMS back ends
  accept). Any 2xx answer counts as uploaded.
- Upload over FTP: ``STOR`` of the file under its own name into the URL's path, which is a
  directory (OCPP GetDiagnostics.location names a directory).

Credentials in a URL never reach a log or an exception text: :func:`safe_url` strips them.
"""

from __future__ import annotations

import ftplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

#: Schemes this module moves files over.
SCHEMES = ("http", "https", "ftp")
#: Seconds a connect or a read may stall before the attempt fails.
DEFAULT_TIMEOUT_S = 30.0
#: Bytes copied per read.
CHUNK = 64 * 1024


class TransferError(Exception):
    """One attempt failed (refused, timed out, 4xx/5xx, FTP error); the text says why.

    ``code`` is the server's answer when it gave one: the HTTP status or the FTP reply code
    (530: not logged in); None for a failure without an answer (refused, timed out)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TooLarge(TransferError):
    """The file is larger than the download's bound (trying again will not help)."""


def _ftp_code(error: BaseException) -> int | None:
    """The reply code an ftplib error starts with ("530 Login incorrect.")."""
    head = str(error)[:3]
    return int(head) if isinstance(error, ftplib.Error) and head.isdigit() else None


def scheme_of(url: str) -> str | None:
    """The URL's scheme in lower case when this module can use it, else None."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    return scheme if scheme in SCHEMES else None


def safe_url(url: str) -> str:
    """``url`` without ``user:password@`` (for logs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def download(
    url: str,
    dest: Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    context: ssl.SSLContext | None = None,
    max_bytes: int | None = None,
) -> int:
    """Fetch ``url`` into ``dest`` (created or replaced); returns the bytes written.

    ``context`` verifies an HTTPS server (None: the system's CA store); ``max_bytes`` bounds
    the file (:class:`TooLarge` beyond it, ``dest`` removed; None: unbounded)."""
    scheme = scheme_of(url)
    if scheme is None:
        raise TransferError(f"{safe_url(url)}: unsupported scheme")
    try:
        if scheme == "ftp":
            return _ftp_download(url, dest, timeout_s, max_bytes)
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as answer:
            announced = answer.headers.get("Content-Length", "")
            if max_bytes is not None and announced.isdigit() and int(announced) > max_bytes:
                raise TooLarge(f"{safe_url(url)}: {announced} bytes, more than {max_bytes}")
            with dest.open("wb") as out:
                _copy_bounded(answer.read, out.write, max_bytes, url)
    except TooLarge:
        dest.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the answer, and with it the socket
        raise TransferError(f"{safe_url(url)}: HTTP {exc.code} {exc.reason}", exc.code) from None
    except urllib.error.URLError as exc:
        raise TransferError(f"{safe_url(url)}: {exc.reason}") from None
    except (OSError, ftplib.Error, EOFError) as exc:
        message = f"{safe_url(url)}: {type(exc).__name__}: {exc}"
        raise TransferError(message, _ftp_code(exc)) from None
    return dest.stat().st_size


def upload(
    url: str,
    path: Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    context: ssl.SSLContext | None = None,
) -> None:
    """Send the file at ``path`` to ``url`` (see the module text for the forms used);
    ``context`` verifies an HTTPS server (None: the system's CA store)."""
    scheme = scheme_of(url)
    if scheme is None:
        raise TransferError(f"{safe_url(url)}: unsupported scheme")
    try:
        if scheme == "ftp":
            _ftp_upload(url, path, timeout_s)
        else:
            _http_upload(url, path, timeout_s, context)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the answer, and with it the socket
        raise TransferError(f"{safe_url(url)}: HTTP {exc.code} {exc.reason}", exc.code) from None
    except urllib.error.URLError as exc:
        raise TransferError(f"{safe_url(url)}: {exc.reason}") from None
    except (OSError, ftplib.Error, EOFError) as exc:
        message = f"{safe_url(url)}: {type(exc).__name__}: {exc}"
        raise TransferError(message, _ftp_code(exc)) from None


def _http_upload(url: str, path: Path, timeout_s: float, context: ssl.SSLContext | None) -> None:
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s, context=context) as answer:
        answer.read()


def _ftp_login(url: str, timeout_s: float) -> tuple[ftplib.FTP, str]:
    parts = urllib.parse.urlsplit(url)
    ftp = ftplib.FTP(timeout=timeout_s)
    try:
        ftp.connect(parts.hostname or "", parts.port or 21)
        ftp.login(
            urllib.parse.unquote(parts.username or "anonymous"),
            urllib.parse.unquote(parts.password or ""),
        )
        ftp.set_pasv(True)
    except BaseException:
        ftp.close()
        raise
    return ftp, urllib.parse.unquote(parts.path)


def _copy_bounded(
    read: Callable[[int], bytes], write: Callable[[bytes], object], max_bytes: int | None, url: str
) -> None:
    """Copy blocks from ``read`` to ``write`` until EOF; :class:`TooLarge` past the bound."""
    total = 0
    while block := read(CHUNK):
        total += len(block)
        if max_bytes is not None and total > max_bytes:
            raise TooLarge(f"{safe_url(url)}: more than {max_bytes} bytes")
        write(block)


def _ftp_download(url: str, dest: Path, timeout_s: float, max_bytes: int | None) -> int:
    ftp, remote = _ftp_login(url, timeout_s)
    total = 0

    def write(block: bytes) -> None:
        nonlocal total
        total += len(block)
        if max_bytes is not None and total > max_bytes:
            raise TooLarge(f"{safe_url(url)}: more than {max_bytes} bytes")
        out.write(block)

    try:
        with dest.open("wb") as out:
            ftp.retrbinary(f"RETR {remote}", write, CHUNK)
        ftp.quit()
    except TooLarge:
        dest.unlink(missing_ok=True)
        raise
    finally:
        ftp.close()
    return dest.stat().st_size


def _ftp_upload(url: str, path: Path, timeout_s: float) -> None:
    ftp, directory = _ftp_login(url, timeout_s)
    try:
        if directory not in ("", "/"):
            ftp.cwd(directory)
        with path.open("rb") as source:
            ftp.storbinary(f"STOR {path.name}", source, CHUNK)
        ftp.quit()
    finally:
        ftp.close()
