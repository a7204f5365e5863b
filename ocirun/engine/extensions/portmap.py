"""`-p in:out` (port mapping) and `-n` (network cooperation), for AF_INET and AF_INET6.

bind/connect/sendto with a mapped guest port use the host port instead;
getsockname/getpeername (and the source of a recvfrom) show the guest the
port it asked for. With `-n`,
every bind to a non-zero port binds to port 0, the port the kernel chose is
read back from the tracer (pidfd_getfd + getsockname on a duplicate of the
guest's socket) and recorded, so later connects by any process of the guest
tree to the original port reach it. One PortMap serves the whole tree.
"""

from __future__ import annotations

import ctypes
import os
import socket

from ocirun.engine.extension import Extension
from ocirun.engine.extensions.shared import sockaddr as sa
from ocirun.engine.extensions.shared.common import host_errors_reported

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

_libc = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_getfd = 438
MAX_SOCKADDR = 128

# name: (sockaddr pointer arg, length arg)
_OUTGOING = {"bind": (1, 2), "connect": (1, 2), "sendto": (4, 5)}
# results that show a port back to the guest: (sockaddr pointer arg, socklen pointer arg)
_NAMES = {"getsockname": (1, 2), "getpeername": (1, 2), "recvfrom": (4, 5)}


def socket_port(pid: int, fd: int) -> int | None:
    """Local port of the guest's socket `fd`, seen from the tracer."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        dup = _libc.syscall(SYS_pidfd_getfd, pidfd, fd, 0)
        if dup < 0:
            return None
        s = socket.socket(fileno=dup)
        try:
            name = s.getsockname()
            return name[1] if isinstance(name, tuple) else None
        finally:
            s.close()
    except OSError:
        return None
    finally:
        os.close(pidfd)


class PortMap(Extension):
    name = "portmap"
    syscalls = frozenset(set(_OUTGOING) | set(_NAMES))

    def __init__(self, ports: dict[int, int] | None = None, netcoop: bool = False):
        self.map = sa.PortMap(static=dict(ports or {}))
        self.netcoop = netcoop

    def _read(self, tracee: Tracee, addr: int, length: int) -> bytes | None:
        if not addr or length < 8 or length > MAX_SOCKADDR:
            return None
        try:
            return tracee.read(addr, length)
        except OSError:
            return None

    @host_errors_reported()
    def on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        name = sc.name
        if name in _NAMES:
            if sc.args[_NAMES[name][0]]:
                sc.want_exit()  # (a UDP reply from a mapped port shows the guest's port)
            return
        if name not in _OUTGOING:
            return  # another extension's or the core's syscall
        a, ln = _OUTGOING[name]
        raw = self._read(tracee, sc.args[a], sc.args[ln] & 0xFFFFFFFF)
        if raw is None:
            return
        addr = sa.parse(raw)
        if addr is None:
            return
        if name == "bind":
            new_port = self.map.for_bind(addr.port)
            if new_port is None and self.netcoop and addr.port != 0:
                new_port = 0
                tracee.data["portmap.bind"] = (sc, addr)
                sc.want_exit()
        else:
            new_port = self.map.for_connect(addr)
        if new_port is None or new_port == addr.port:
            return
        sc.set_arg(a, sc.push(sa.with_port(raw, new_port)))

    @host_errors_reported()
    def on_exit(self, tracee: Tracee, sc: Syscall) -> None:
        name = sc.name
        if name == "bind":
            note = tracee.data.pop("portmap.bind", None)
            addr = note[1] if note is not None and note[0] is sc else None
            if addr is not None and sc.result == 0:
                port = socket_port(tracee.pid, sc.arg_int(0))
                if port is not None:
                    self.map.record(addr, port)
            return
        if name in _NAMES and sc.result >= 0:
            a, ln = _NAMES[name]
            try:
                length = tracee.read_u32(sc.args[ln])
            except OSError:
                return
            raw = self._read(tracee, sc.args[a], min(length, MAX_SOCKADDR))
            if raw is None:
                return
            addr = sa.parse(raw)
            if addr is None:
                return
            guest = self.map.guest_port(addr.port, addr)
            if guest is not None and guest != addr.port:
                try:
                    tracee.write(sc.args[a], sa.with_port(raw, guest)[:4])
                except OSError:
                    pass



