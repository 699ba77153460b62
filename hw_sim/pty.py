"""Pseudo-terminals: the simulator's serial cables.

A driver opens the slave side by path with pyserial, exactly as it opens ``/dev/serial0`` on
a Pi; the simulated device reads and writes the master side. The slave is put in raw mode so
no byte (0x03, 0x11, CR, ...) is interpreted by the terminal line discipline.
"""

from __future__ import annotations

import os
import tty


def open_pty() -> tuple[int, str]:
    """Open a raw pty pair; return (master fd for the simulated device, slave path for the driver).

    The slave fd is closed again: the driver opens it by path, and the master stays usable
    because the kernel keeps the pair alive while the master is open. The caller owns the
    master fd and must close it.
    """
    master_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)
    path = os.ttyname(slave_fd)
    os.close(slave_fd)
    return master_fd, path
