"""Real local file servers for the diagnostics and firmware tests (no tests here).

- :class:`HttpFiles`: ``http.server`` in a thread on 127.0.0.1 (an ephemeral port). GET
  serves :attr:`HttpFiles.files`; POST and PUT record the body in :attr:`HttpFiles.uploads`.
  ``fail_next`` answers that many requests with ``fail_status``; ``gate`` holds requests
  until it is set (to watch a transfer in progress); ``tls`` serves HTTPS; ``errors`` answers
  GET of a path with that HTTP status, every time.
- :class:`FtpFiles`: pyftpdlib in a thread serving a directory, user ``user``/``pw`` (read and
  write) and anonymous (read only); a wrong password is refused (530) at once.

Both are context managers that stop their thread and close their sockets.
"""

from __future__ import annotations

import email.parser
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
from pyftpdlib.handlers import FTPHandler  # type: ignore[import-untyped]
from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]


@dataclass
class Upload:
    path: str
    method: str
    content_type: str
    body: bytes

    def form_file(self) -> tuple[str, bytes]:
        """The ``file`` part of a multipart/form-data body: (filename, content)."""
        raw = f"Content-Type: {self.content_type}\r\n\r\n".encode() + self.body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                return str(part.get_filename()), payload
        raise AssertionError("no file part")


@dataclass
class HttpFiles:
    files: dict[str, bytes] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 500
    gate: threading.Event | None = None
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context
    errors: dict[str, int] = field(default_factory=dict)  # path: status of every GET
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        assert self._server is not None
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HttpFiles:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def _failing(self) -> bool:
                state.requests.append(f"{self.command} {self.path}")
                if state.gate is not None:
                    state.gate.wait(10)
                if state.fail_next > 0:
                    state.fail_next -= 1
                    self.send_error(state.fail_status)
                    return True
                return False

            def do_GET(self) -> None:
                if self._failing():
                    return
                path = self.path.split("?")[0]
                if path in state.errors:
                    self.send_error(state.errors[path])
                    return
                body = state.files.get(path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _receive(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self._failing():
                    return
                state.uploads.append(
                    Upload(self.path, self.command, self.headers.get("Content-Type", ""), body)
                )
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = _receive
            do_PUT = _receive

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.gate is not None:
            self.gate.set()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._thread.join(5)
        self._server.server_close()


class FtpFiles:
    """An FTP server on 127.0.0.1 serving ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        authorizer = DummyAuthorizer()
        authorizer.add_user("user", "pw", str(root), perm="elradfmwMT")
        authorizer.add_anonymous(str(root))
        # a refused login is answered at once (the server's default waits 3 s against guessing)
        handler = type(
            "Handler", (FTPHandler,), {"authorizer": authorizer, "auth_failed_timeout": 0}
        )
        self._server = FTPServer(("127.0.0.1", 0), handler)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve)

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    def url(self, path: str, credentials: str = "user:pw@") -> str:
        return f"ftp://{credentials}127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        self._server.close_all()

    def __enter__(self) -> FtpFiles:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
