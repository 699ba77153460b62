"""Linux sysfs hardware PWM (``/sys/class/pwm``): the Pi's CP square wave generator.

Sequence (reference 6.1): ``echo N > pwmchipX/export`` if ``pwmN/`` is missing, wait until
``pwmN/period``, ``duty_cycle`` and ``enable`` are writable (udev may fix permissions a moment
after the kernel creates them), then ``period`` (ns), ``duty_cycle`` (ns), ``enable = 1``.
The kernel refuses ``duty_cycle > period`` at every step, so duty goes to 0 before a period
change.

Why not the PyPI package ``rpi-hardware-pwm``: it does exactly this, but hard-codes
``/sys/class/pwm``; tests and the simulator need to point the driver at a temporary
directory (``HardwareSeams.pwm_sysfs_root``) and read back what it wrote.

Duty is *logical*: the percentage of each period during which the CP is at its positive level
after the driver stage. An inverting stage (op-amp) turns a high Pi pin into -12 V, so with
``inverted=True`` the pin's duty is ``100 - duty``. We invert the number rather than using the
``polarity`` attribute, which not every PWM controller implements; ``polarity`` is reset to
``normal`` at start so the two cannot stack.

Threading: all methods run on the caller's thread (the asyncio loop). A duty change is one
``open``/``write``/``close`` of a sysfs attribute, which the kernel handles in microseconds
without sleeping on hardware, so it is acceptable on the loop; it is also what makes the
safety path (state F, nothing offered) immediate. Only construction may wait (up to
``export_timeout_s``, only on the first export after boot): do it at start-up.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import time
from pathlib import Path

from drivers.errors import ConfigurationError, FaultKind, PermanentFault

log = logging.getLogger(__name__)

PERIOD_1KHZ_NS = 1_000_000
_CONTROL_FILES = ("period", "duty_cycle", "enable")
_EXPORT_POLL_S = 0.005


def find_chip(root: Path) -> int:
    """The number of the only ``pwmchip*`` under ``root``.

    Chip numbers differ between kernels and Pi models (reference 6.1); with several chips
    the configuration must say which. Raises :class:`ConfigurationError` (key ``pwm_chip``).
    """
    chips = sorted(
        int(path.name.removeprefix("pwmchip"))
        for path in root.glob("pwmchip*")
        if path.name.removeprefix("pwmchip").isdigit()
    )
    if not chips:
        raise ConfigurationError(
            "pwm_chip", f"no pwmchip* under {root}: is dtoverlay=pwm in config.txt?"
        )
    if len(chips) > 1:
        names = ", ".join(f"pwmchip{n}" for n in chips)
        raise ConfigurationError("pwm_chip", f"several PWM chips under {root} ({names}): pick one")
    return chips[0]


class SysfsPwm:
    """One hardware PWM channel driven through sysfs.

    Construction exports and configures the channel and leaves it enabled at logical 0 %
    (a steady level: state F, -12 V, behind our driver stage). ``chip=None`` finds the chip
    with :func:`find_chip`. Setup problems raise :class:`ConfigurationError` with the key
    ``pwm_chip`` or ``pwm_channel``; a failed write afterwards raises
    ``PermanentFault(CP_ERROR)``: the pilot is no longer under control.
    """

    def __init__(
        self,
        root: Path = Path("/sys/class/pwm"),
        chip: int | None = None,
        channel: int = 0,
        *,
        inverted: bool = False,
        period_ns: int = PERIOD_1KHZ_NS,
        export_timeout_s: float = 2.0,
    ) -> None:
        if chip is None:
            chip = find_chip(root)
        self._chip_dir = root / f"pwmchip{chip}"
        self._dir = self._chip_dir / f"pwm{channel}"
        self._channel = channel
        self._inverted = inverted
        self._period_ns = period_ns
        self._duty_pct = 0.0
        self._written_ns: int | None = None
        self._closed = False
        self._setup(export_timeout_s)

    @property
    def path(self) -> Path:
        """The channel's sysfs directory (``.../pwmchipX/pwmN``)."""
        return self._dir

    @property
    def duty_pct(self) -> float:
        """The logical duty last set, 0-100 %."""
        return self._duty_pct

    def set_duty_pct(self, duty_pct: float) -> None:
        """Set the logical duty (0-100 %); a no-op when the ns value does not change.

        Rounds the high time *down* to whole ns, so an offer is never above the request.
        """
        if self._closed:
            raise RuntimeError(f"{self._dir} is closed")
        if not 0.0 <= duty_pct <= 100.0:  # also rejects NaN
            raise ValueError(f"duty must be 0-100 %, not {duty_pct}")
        # The epsilon keeps binary noise (53.3 % -> 532999.99999 ns) from costing a ns.
        high_ns = math.floor(self._period_ns * duty_pct / 100.0 + 1e-6)
        pin_ns = self._period_ns - high_ns if self._inverted else high_ns
        if pin_ns != self._written_ns:
            self._write_or_fault("duty_cycle", pin_ns)
            self._written_ns = pin_ns
        self._duty_pct = duty_pct

    def close(self) -> None:
        """Leave the output at logical 0 % and stop; idempotent.

        Safe steady state: state F (-12 V, "EVSE not available"), with the channel still
        enabled so the pin *holds* that level. Disabling or unexporting would hand the pin to
        the controller's idle level, which behind an inverting stage is +12 V; a steady -12 V
        tells any EV that this charger is not available until a controller takes over.
        """
        if self._closed:
            return
        try:
            self.set_duty_pct(0.0)
        finally:
            self._closed = True

    def __enter__(self) -> SysfsPwm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- setup -------------------------------------------------------------------------------

    def _setup(self, export_timeout_s: float) -> None:
        if not self._chip_dir.is_dir():
            raise ConfigurationError("pwm_chip", f"{self._chip_dir} does not exist")
        npwm = self._read_int(self._chip_dir / "npwm", key="pwm_chip")
        if not 0 <= self._channel < npwm:
            raise ConfigurationError(
                "pwm_channel", f"{self._chip_dir.name} has channels 0-{npwm - 1}"
            )
        if not self._dir.is_dir():
            self._export(export_timeout_s)
        self._wait_writable(export_timeout_s)
        pin_ns = self._period_ns if self._inverted else 0  # logical 0 %: state F
        try:
            polarity = self._dir / "polarity"
            if polarity.exists() and polarity.read_text().strip() != "normal":
                _write(self._dir / "enable", 0)  # polarity may only change while disabled
                _write(polarity, "normal")
            _write(self._dir / "duty_cycle", 0)  # 0 <= any period, so the next write is valid
            _write(self._dir / "period", self._period_ns)
            _write(self._dir / "duty_cycle", pin_ns)
            _write(self._dir / "enable", 1)
        except OSError as exc:
            raise ConfigurationError("pwm_channel", f"cannot set up {self._dir}: {exc}") from exc
        self._written_ns = pin_ns

    def _export(self, timeout_s: float) -> None:
        try:
            _write(self._chip_dir / "export", self._channel)
        except OSError as exc:
            hint = " (in use, e.g. by audio?)" if exc.errno == errno.EBUSY else ""
            raise ConfigurationError(
                "pwm_channel", f"cannot export {self._dir.name}{hint}: {exc}"
            ) from exc
        log.info("exported %s", self._dir)

    def _wait_writable(self, timeout_s: float) -> None:
        # The kernel creates pwmN/ during the export write, but a udev rule granting a
        # non-root user access runs a little later: poll briefly rather than fail.
        deadline = time.monotonic() + timeout_s
        while not all(os.access(self._dir / name, os.W_OK) for name in _CONTROL_FILES):
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    "pwm_channel",
                    f"{self._dir} not writable after {timeout_s} s: run as root or add a "
                    "udev rule for the pwm subsystem",
                )
            time.sleep(_EXPORT_POLL_S)

    def _read_int(self, path: Path, *, key: str) -> int:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(key, f"cannot read {path}: {exc}") from exc

    def _write_or_fault(self, name: str, value: int) -> None:
        try:
            _write(self._dir / name, value)
        except OSError as exc:
            raise PermanentFault(FaultKind.CP_ERROR, f"write {self._dir / name}: {exc}") from exc


def _write(path: Path, value: int | str) -> None:
    """Write one sysfs attribute as ``echo`` does (value and newline, one write call).

    O_TRUNC is what the shell's ``>`` does (sysfs ignores it); O_NONBLOCK is harmless on sysfs
    attributes and guarantees the open itself cannot block.
    """
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NONBLOCK)
    try:
        os.write(fd, f"{value}\n".encode())
    finally:
        os.close(fd)
