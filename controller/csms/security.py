"""Link security after the OCPP security whitepaper (1.6) / 2.0.1 A00: security profiles 0-3.

========  ===========================  ==============================================
profile   transport                    the charge point proves itself by
========  ===========================  ==============================================
0         ws:// or wss://              nothing (no whitepaper profile: trusted networks)
1         ws:// (or wss://)            HTTP Basic: charge point id + AuthorizationKey
2         wss://, CSMS cert verified   HTTP Basic, as profile 1
3         wss://, CSMS cert verified   its TLS client certificate (no Basic)
========  ===========================  ==============================================

The CSMS certificate is verified against ``[ocpp] ca_file`` (else the system's CAs) plus
every CentralSystemRootCertificate installed with InstallCertificate, with its host name,
over TLS 1.2 or newer. At profile 3 the client certificate is the one signed through the
CSMS (CertificateSigned) once there is one, else ``[ocpp] cert_file``/``key_file``; a new
one the CSMS refuses is dropped for the previous one (see :mod:`.certificates`, the
:class:`CertificateSource`). Installed roots and new certificates apply from the next
connection. Nothing is downgraded silently: profile 2 or 3 with a
``ws://`` URL, a client certificate that cannot be loaded, a CSMS certificate that does not
verify or credentials the CSMS refuses each end the attempt with one log line that names
the reason (:class:`LinkSecurityError`), and the adapter tries again after its backoff.

``SecurityProfile`` can only be raised (whitepaper), and only when its prerequisites are
there; a raise closes the link so that the next connection uses it, and if that connection
is refused for a security reason the previous profile comes back. A new
``AuthorizationKey`` closes the link too, so the next connection uses it; if the CSMS refuses
it (HTTP 401/403), the previous key comes back and the connection after uses that. The
AuthorizationKey is
registered with :func:`controller.logging_setup.add_secret` whenever it is loaded or
changed, so no log line carries it; GetConfiguration never shows it (see ``KeyDef.secret``).

The profile and the key live in the version's configuration store (:class:`SettingStore`)
under the names it gives (:class:`SecurityKeyNames`; 1.6: ``SecurityProfile`` and
``AuthorizationKey``), which the rest of this docstring uses.

Loop thread only; building an SSL context reads the certificate files (small, local).
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidMessage, InvalidStatus

from controller.csms.link import SUBPROTOCOL, LinkTiming, open_link
from controller.csms.security_events import SecurityEvent, SecurityEvents
from controller.logging_setup import add_secret

log = logging.getLogger(__name__)

#: The whitepaper's AuthorizationKey: at least 16 bytes; at most 40 characters (20 bytes
#: written as hexadecimal digits).
AUTHORIZATION_KEY_MIN = 16
AUTHORIZATION_KEY_MAX = 40


@dataclass(frozen=True, slots=True)
class SecurityKeyNames:
    """What the version calls the security profile and the Basic-auth password."""

    profile: str
    password: str


class SettingStore(Protocol):
    """The version's configuration store (1.6: :class:`~controller.ocpp16.keys.OcppConfig`)."""

    def get(self, key: str) -> str | None: ...

    def get_int(self, key: str) -> int: ...

    def change(self, key: str, value: str) -> Awaitable[object]:
        """Validate (the checks added), store and announce a new value."""
        ...

    def add_check(self, key: str, check: Callable[[str], str | None]) -> None:
        """``check(value)`` names what is wrong with a new value, None when it may be set."""
        ...

    def on_change(self, callback: Callable[[str, str], None]) -> None:
        """``callback(key, value)`` after each stored change."""
        ...


class LinkSecurityError(Exception):
    """A connection attempt refused for a security reason; the message says which, and
    ``event`` the security event it is (None: a local problem, e.g. a ws:// URL)."""

    def __init__(self, message: str, event: SecurityEvent | None = None) -> None:
        super().__init__(message)
        self.event = event


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files from ``[ocpp]``: the CA that signs the CSMS certificate (None: the system's
    CAs) and the charge point's client certificate and key (profile 3)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class CertificateSource(Protocol):
    """What the link takes from certificate management (:class:`.certificates.
    CertificateManager`): more CSMS roots, a signed client certificate, and what became of
    a connection."""

    def csms_roots_pem(self) -> str:
        """PEM text of further CSMS trust anchors ("" for none)."""
        ...

    def client_pem(self) -> Path | None:
        """A file with the client certificate chain and its key, or None."""
        ...

    async def link_opened(self, csms_leaf_der: bytes | None) -> None:
        """A connection succeeded; the CSMS certificate (DER) when over TLS."""
        ...

    async def client_refused(self) -> None:
        """The CSMS refused us at profile 3."""
        ...


def authorization_key_problem(value: str) -> str | None:
    """Why ``value`` cannot be an AuthorizationKey, or None."""
    if not AUTHORIZATION_KEY_MIN <= len(value) <= AUTHORIZATION_KEY_MAX:
        return (
            f"must be {AUTHORIZATION_KEY_MIN} to {AUTHORIZATION_KEY_MAX} characters, "
            f"got {len(value)}"
        )
    if not (value.isascii() and value.isprintable()):
        return "must be printable ASCII"
    return None


def basic_password(authorization_key: str) -> bytes:
    """The Basic-auth password an AuthorizationKey stands for.

    The whitepaper has the CSMS set a random binary password of 16 to 20 bytes written as
    hexadecimal digits, and the OCA's test tool (OCTT TC_085_CS) checks that the header
    carries the password in its "non hex representation": a key of 32 to 40 hex digits
    (an even number) is sent as the bytes it encodes. Any other key (16 to 20 characters
    of plain text, say) is sent as it is, in UTF-8."""
    if 32 <= len(authorization_key) <= 40 and len(authorization_key) % 2 == 0:
        try:
            return bytes.fromhex(authorization_key)
        except ValueError:
            pass  # not hexadecimal: plain text
    return authorization_key.encode()


def basic_authorization(chargepoint_id: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP Basic (RFC 7617) for the charge point,
    ``password`` being the AuthorizationKey (see :func:`basic_password`)."""
    credentials = chargepoint_id.encode() + b":" + basic_password(password)
    return f"Basic {base64.b64encode(credentials).decode('ascii')}"


def client_ssl_context(profile: int, files: TlsFiles, extra_roots_pem: str = "") -> ssl.SSLContext:
    """TLS 1.2+ context verifying the CSMS (CA file or system CAs, plus ``extra_roots_pem``,
    host name); for profile 3 it also carries the client certificate. Raises
    :class:`LinkSecurityError`."""
    try:
        context = ssl.create_default_context(
            cafile=str(files.ca_file) if files.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise LinkSecurityError(f"cannot load the CA file {files.ca_file}: {exc}") from exc
    if extra_roots_pem:
        try:
            context.load_verify_locations(cadata=extra_roots_pem)
        except ssl.SSLError as exc:
            raise LinkSecurityError(f"cannot load the installed CSMS roots: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if profile >= 3:
        if files.cert_file is None or files.key_file is None:
            raise LinkSecurityError("security profile 3 needs [ocpp] cert_file and key_file")
        try:
            context.load_cert_chain(files.cert_file, files.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise LinkSecurityError(
                f"cannot load the client certificate {files.cert_file} with its key: "
                f"{type(exc).__name__}"  # never the key file's content
            ) from exc
    return context


def explain(exc: BaseException, tls: bool) -> LinkSecurityError | None:
    """A security reason for a failed handshake (``tls``: over wss://), or None."""
    if isinstance(exc, InvalidMessage) and exc.__cause__ is not None:
        if tls and isinstance(exc.__cause__, EOFError):
            # TLS 1.3: a server that wants (or refuses) our client certificate says so only
            # after the handshake, by closing the connection before its HTTP answer.
            return LinkSecurityError(
                "TLS: the CSMS closed the connection before answering the handshake "
                "(it may require a client certificate, or refuse ours)",
                SecurityEvent.FAILED_TO_AUTHENTICATE,
            )
        exc = exc.__cause__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return LinkSecurityError(
            f"TLS: the CSMS certificate was refused ({exc.verify_message or exc.reason})",
            SecurityEvent.INVALID_CSMS_CERTIFICATE,
        )
    if isinstance(exc, ssl.SSLError):
        return LinkSecurityError(
            f"TLS handshake failed ({exc.reason or exc})", SecurityEvent.FAILED_TO_AUTHENTICATE
        )
    if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
        return LinkSecurityError(
            f"the CSMS refused our credentials (HTTP {exc.response.status_code})",
            SecurityEvent.FAILED_TO_AUTHENTICATE,
        )
    return None


class LinkSecurity:
    """The charge point's security profile and credentials, from the version's keys.

    ``store`` holds them under ``names``; ``url`` is the CSMS URL (its scheme decides what
    profiles can work); ``files`` the ``[ocpp]`` TLS files.
    """

    def __init__(
        self,
        store: SettingStore,
        *,
        names: SecurityKeyNames,
        chargepoint_id: str,
        url: str,
        files: TlsFiles,
    ) -> None:
        self._config = store
        self._names = names
        self._chargepoint_id = chargepoint_id
        self._secure_url = url.startswith("wss://")
        self._files = files
        self._events: SecurityEvents | None = None
        self._certificates: CertificateSource | None = None
        self._relink: Callable[[], None] | None = None
        self._known_profile = self.profile  # the value before a change
        self._fallback: int | None = None  # profile to return to if an upgrade cannot connect
        self._known_password = self.password  # the value before a change
        self._password_fallback: str | None = None  # the key to return to if a new one fails
        self._reverting = False
        store.add_check(names.profile, self._profile_problem)
        store.add_check(names.password, authorization_key_problem)
        store.on_change(self._changed)
        add_secret(self.password)

    @property
    def profile(self) -> int:
        return self._config.get_int(self._names.profile)

    @property
    def files(self) -> TlsFiles:
        """The ``[ocpp]`` TLS files (before a signed client certificate replaces any)."""
        return self._files

    @property
    def password(self) -> str:
        return self._config.get(self._names.password) or ""

    async def require(self, configured: int) -> None:
        """Raise SecurityProfile to the configured profile when a stored one is lower (the
        installer raised ``[ocpp] security_profile``): never run below the configuration."""
        if self.profile < configured:
            log.warning(
                "SecurityProfile %d is below [ocpp] security_profile %d: raising it",
                self.profile,
                configured,
            )
            await self._config.change(self._names.profile, str(configured))

    def on_upgrade(self, relink: Callable[[], None]) -> None:
        """``relink()`` closes the link after a raised SecurityProfile, so the next connection
        uses it (the ChangeConfiguration answer must still go out first)."""
        self._relink = relink

    def use_certificates(self, source: CertificateSource) -> None:
        """Take installed CSMS roots and a signed client certificate from ``source``."""
        self._certificates = source

    def _tls_files(self) -> tuple[TlsFiles, str]:
        """The TLS files for the next connection (a signed client certificate replaces
        ``[ocpp] cert_file``) and the installed CSMS roots' PEM."""
        source = self._certificates
        if source is None:
            return self._files, ""
        signed = source.client_pem()
        files = (
            self._files
            if signed is None
            else replace(self._files, cert_file=signed, key_file=signed)
        )
        return files, source.csms_roots_pem()

    def report_to(self, events: SecurityEvents) -> None:
        """Record refused connections and security key changes in ``events``."""
        self._events = events

    def _changed(self, key: str, value: str) -> None:
        if key == self._names.password:
            add_secret(value)
            old_key, self._known_password = self._known_password, value
            if not self._reverting and value != old_key:
                if self._password_fallback is None:
                    self._password_fallback = old_key
                if self._relink is not None and self.profile in (1, 2):
                    self._relink()
        if key == self._names.profile:
            previous, self._known_profile = self._known_profile, int(value)
            if not self._reverting and int(value) > previous:
                self._fallback = previous
                if self._relink is not None:
                    self._relink()
        if key in (self._names.password, self._names.profile) and self._events is not None:
            shown = "changed" if key == self._names.password else f"now {value}"
            self._events.record(SecurityEvent.RECONFIGURATION, f"{key} {shown}")

    def _profile_problem(self, value: str) -> str | None:
        wanted, now = int(value), self.profile
        if wanted < now and not self._reverting:
            return f"can only be raised (it is {now})"
        if wanted in (1, 2) and authorization_key_problem(self.password) is not None:
            return f"profile {wanted} needs an AuthorizationKey first"
        if wanted >= 2 and not self._secure_url:
            return f"profile {wanted} needs a wss:// CSMS URL"
        files, _ = self._tls_files()
        if wanted == 3 and (files.cert_file is None or files.key_file is None):
            return "profile 3 needs [ocpp] cert_file and key_file (or a signed certificate)"
        return None

    def options(self, url: str) -> tuple[dict[str, str], ssl.SSLContext | None]:
        """Handshake headers and TLS context for ``url`` under the current profile; raises
        :class:`LinkSecurityError` rather than connect with less than the profile asks."""
        profile = self.profile
        secure = url.startswith("wss://")
        if profile >= 2 and not secure:
            raise LinkSecurityError(
                f"security profile {profile} needs wss://; refusing to connect to {url}"
            )
        headers: dict[str, str] = {}
        if profile in (1, 2):
            if not self.password:
                raise LinkSecurityError(f"security profile {profile} needs an AuthorizationKey")
            headers["Authorization"] = basic_authorization(self._chargepoint_id, self.password)
        if not secure:
            return headers, None
        files, roots = self._tls_files()
        return headers, client_ssl_context(profile, files, roots)

    async def open(
        self, url: str, timing: LinkTiming, subprotocol: str = SUBPROTOCOL
    ) -> ClientConnection:
        """:func:`~controller.csms.link.open_link` with this profile's credentials, for the
        OCPP version of ``subprotocol``.

        After a raised SecurityProfile, the first attempt refused for a security reason
        returns to the previous profile (whitepaper: an upgrade that cannot connect is
        undone); the next attempt uses it.
        """
        profile = self.profile
        try:
            headers, context = self.options(url)
            ws = await open_link(
                url, timing, headers=headers, ssl_context=context, subprotocol=subprotocol
            )
        except LinkSecurityError:
            await self._client_refused(profile)  # e.g. a client certificate that cannot load
            await self._fall_back()
            raise
        except (OSError, InvalidStatus, InvalidMessage) as exc:
            reason = explain(exc, url.startswith("wss://"))
            if reason is None:
                raise
            if reason.event is not None and self._events is not None:
                self._events.record(reason.event, f"{url}: {reason}", logged=True)
            if reason.event is SecurityEvent.FAILED_TO_AUTHENTICATE:
                await self._client_refused(profile)
            await self._fall_back()
            raise reason from exc
        self._fallback = None  # the profile works: it stays
        self._password_fallback = None  # and so does the key
        if self._certificates is not None:
            await self._certificates.link_opened(_peer_certificate(ws))
        return ws

    async def _client_refused(self, profile: int) -> None:
        if profile >= 3 and self._certificates is not None:
            await self._certificates.client_refused()

    async def _fall_back(self) -> None:
        password, self._password_fallback = self._password_fallback, None
        if password is not None:
            log.warning("the CSMS refused the new AuthorizationKey: back to the previous one")
            self._reverting = True
            try:
                await self._config.change(self._names.password, password)
            finally:
                self._reverting = False
        fallback, self._fallback = self._fallback, None
        if fallback is None:
            return
        log.warning("SecurityProfile %d cannot connect: back to %d", self.profile, fallback)
        self._reverting = True
        try:
            await self._config.change(self._names.profile, str(fallback))
        finally:
            self._reverting = False


def _peer_certificate(ws: ClientConnection) -> bytes | None:
    """The CSMS certificate (DER) of a wss:// connection; None over ws://."""
    ssl_object = ws.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return der
