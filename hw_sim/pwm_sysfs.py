"""A temporary directory that behaves like ``/sys/class/pwm`` for one PWM chip.

Layout, as the kernel makes it: ``<root>/pwmchipN/{npwm,export,unexport}`` and, after a
channel number is written to ``export``, ``pwmchipN/pwmC/{period,duty_cycle,enable,polarity}``
with the kernel's initial values (0, 0, 0, ``normal``).

No kernel watches this directory, so ``export`` and ``unexport`` are named pipes served by a
small thread: writing ``2`` to ``export`` makes ``pwm2/`` appear a moment later, which also
exercises the driver's wait for the channel directory (on a Pi udev causes a similar delay
before the files become writable). The directory is built under a hidden name and renamed
into place, so a driver never sees ``pwmC/`` without its files. The attribute files are
plain files: the readers below check the kernel's rule ``duty_cycle <= period`` when reading
back, since a plain file cannot refuse the write the kernel would refuse.

The pipes are opened read-write by the server, so a driver's write never blocks; after
:meth:`SimPwmSysfs.close` nobody reads them and a non-blocking write fails with ENXIO.

:meth:`SimPwmSysfs.output_pct` is what the simulated car and ADC read on every conversion
(hundreds of times a second from the CP sampling thread), so it reads the attribute files
through descriptors kept open per export (``pread``, one system call each) instead of
opening every file each time: the simulator must not dominate the controller's CPU figures.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import threading
import time
from pathlib import Path

from drivers.threads import NamedThread

log = logging.getLogger(__name__)

#: How long a read-back waits for a driver's write (truncate, then write) to complete.
_EMPTY_READ_TIMEOUT_S = 1.0


class SimPwmSysfs:
    """One simulated ``pwmchip<chip>`` with ``channels`` channels under ``root``.

    Start-up creates the tree and a server thread (``sim-pwmchip<chip>``); :meth:`close`
    stops the thread and is idempotent. The read-back methods may be called from any thread.
    """

    def __init__(self, root: Path, chip: int = 0, channels: int = 2) -> None:
        self.root = root
        self.chip_dir = root / f"pwmchip{chip}"
        self.channels = channels
        self.chip_dir.mkdir(parents=True, exist_ok=True)
        (self.chip_dir / "npwm").write_text(f"{channels}\n")
        self._pipes: dict[int, str] = {}
        for name in ("export", "unexport"):
            path = self.chip_dir / name
            if not path.exists():
                os.mkfifo(path, 0o600)
            # O_RDWR keeps a writer open on our side: select() then blocks until data arrives
            # instead of reporting EOF whenever no driver has the pipe open.
            self._pipes[os.open(path, os.O_RDWR | os.O_NONBLOCK)] = name
        self._wake_r, self._wake_w = os.pipe()
        self._closed = False
        # Descriptors on each exported channel's attribute files, for output_pct. A channel
        # directory is only ever created or removed by _handle, which bumps the generation:
        # descriptors of an older generation point at files of a removed directory.
        self._fd_lock = threading.Lock()
        self._generation = 0
        self._fds: dict[int, tuple[int, dict[str, int]]] = {}
        self._last: dict[tuple[int, str], int] = {}  # (channel, attribute): value read last
        self._thread = NamedThread(target=self._serve, name=f"sim-pwmchip{chip}", daemon=True)
        self._thread.start()

    # --- read-back ---------------------------------------------------------------------------

    def channel_dir(self, channel: int) -> Path:
        return self.chip_dir / f"pwm{channel}"

    def exported(self, channel: int) -> bool:
        return self.channel_dir(channel).is_dir()

    def period_ns(self, channel: int) -> int:
        return self._read_int(channel, "period")

    def duty_cycle_ns(self, channel: int) -> int:
        """The ``duty_cycle`` attribute as written; ``ValueError`` where the kernel says EINVAL."""
        duty = self._read_int(channel, "duty_cycle")
        period = self._read_int(channel, "period")
        if duty > period:
            raise ValueError(f"pwm{channel}: duty_cycle {duty} > period {period}: kernel refuses")
        return duty

    def duty_pct(self, channel: int) -> float:
        """``duty_cycle / period`` in %: the share of each period the *pin* is high."""
        period = self.period_ns(channel)
        return 100.0 * self.duty_cycle_ns(channel) / period if period else 0.0

    def enabled(self, channel: int) -> bool:
        return self._read_int(channel, "enable") == 1

    def polarity(self, channel: int) -> str:
        return (self.channel_dir(channel) / "polarity").read_text().strip()

    def output_pct(self, channel: int) -> float:
        """What the pin actually does: high-time % while enabled; 0 % (low) when the channel
        is disabled or not exported, as the BCM PWM idles low. Behind an inverting driver
        stage the CP duty is ``100 - output_pct``. Any thread; cheap (see the module doc)."""
        with self._fd_lock:
            fds = self._channel_fds(channel)
            if fds is None or self._pread_attr(channel, fds, "enable") != 1:
                return 0.0
            period = self._pread_attr(channel, fds, "period")
            duty = self._pread_attr(channel, fds, "duty_cycle")
            inversed = os.pread(fds["polarity"], 16, 0).strip() == b"inversed"
        if duty > period:
            raise ValueError(f"pwm{channel}: duty_cycle {duty} > period {period}: kernel refuses")
        pct = 100.0 * duty / period if period else 0.0
        return 100.0 - pct if inversed else pct

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving export/unexport; idempotent. The tree stays for inspection."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        for fd in (*self._pipes, self._wake_r, self._wake_w):
            os.close(fd)
        with self._fd_lock:
            for _, fds in self._fds.values():
                for fd in fds.values():
                    os.close(fd)
            self._fds.clear()

    def __enter__(self) -> SimPwmSysfs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the "kernel" side -------------------------------------------------------------------

    def _serve(self) -> None:
        fds = [*self._pipes, self._wake_r]
        while True:
            ready, _, _ = select.select(fds, [], [])
            if self._wake_r in ready:
                return
            for fd in ready:
                for token in os.read(fd, 4096).split():
                    self._handle(self._pipes[fd], token.decode(errors="replace"))

    def _handle(self, action: str, token: str) -> None:
        try:
            self._change_export(action, token)
        finally:
            with self._fd_lock:
                self._generation += 1

    def _change_export(self, action: str, token: str) -> None:
        if not token.isdigit() or int(token) >= self.channels:
            log.warning(
                "%s/%s: invalid channel %r (the kernel says EINVAL)", self.chip_dir, action, token
            )
            return
        channel = int(token)
        target = self.channel_dir(channel)
        if action == "unexport":
            shutil.rmtree(target, ignore_errors=True)
            return
        if target.exists():
            log.warning(
                "%s: pwm%d already exported (the kernel says EBUSY)", self.chip_dir, channel
            )
            return
        staging = self.chip_dir / f".pwm{channel}.new"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name, value in (("period", "0"), ("duty_cycle", "0"), ("enable", "0")):
            (staging / name).write_text(f"{value}\n")
        (staging / "polarity").write_text("normal\n")
        staging.rename(target)

    def _channel_fds(self, channel: int) -> dict[str, int] | None:
        """Open descriptors on pwmC's attributes (None: not exported); call with _fd_lock."""
        cached = self._fds.get(channel)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        if cached is not None:
            for fd in cached[1].values():
                os.close(fd)
            del self._fds[channel]
        for name in ("enable", "period", "duty_cycle"):  # a new directory starts afresh
            self._last.pop((channel, name), None)
        fds: dict[str, int] = {}
        try:
            for name in ("enable", "period", "duty_cycle", "polarity"):
                fds[name] = os.open(self.channel_dir(channel) / name, os.O_RDONLY)
        except FileNotFoundError:
            for fd in fds.values():
                os.close(fd)
            return None
        self._fds[channel] = (self._generation, fds)
        return fds

    def _pread_attr(self, channel: int, fds: dict[str, int], name: str) -> int:
        """One attribute of pwmC as the pin follows it; call with _fd_lock.

        A driver's write truncates the file, then writes: a reader in between finds it empty,
        where the kernel's attribute would still hold the old value until the write lands. So
        an empty read returns the value read last (what the pin still does) rather than wait
        for the writer, which a loaded machine may not run for tens of milliseconds; it only
        waits when there is no earlier value.
        """
        text = os.pread(fds[name], 32, 0).strip()
        if not text:
            last = self._last.get((channel, name))
            return last if last is not None else self._pread_int(fds, name)
        value = int(text)
        self._last[(channel, name)] = value
        return value

    @staticmethod
    def _pread_int(fds: dict[str, int], name: str) -> int:
        # Same race as in _read_int: the driver's write truncates first, then writes. The
        # writer may lose the CPU between the two for a while on a loaded machine (seen: over
        # 10 ms, six test processes on two cores), so the bound is time, not a count.
        deadline = time.monotonic() + _EMPTY_READ_TIMEOUT_S
        while True:
            text = os.pread(fds[name], 32, 0).strip()
            if text:
                return int(text)
            if time.monotonic() > deadline:
                raise ValueError(f"pwm attribute {name} stays empty")
            time.sleep(0.0001)

    def _read_int(self, channel: int, name: str) -> int:
        # A driver's write is open(O_TRUNC) then write(): a reader on another thread can land
        # between the two and see an empty file, which the kernel's attributes never show.
        path = self.channel_dir(channel) / name
        deadline = time.monotonic() + _EMPTY_READ_TIMEOUT_S
        while True:
            text = path.read_text().strip()
            if text:
                return int(text)
            if time.monotonic() > deadline:
                raise ValueError(f"{path} stays empty")
            time.sleep(0.0001)
