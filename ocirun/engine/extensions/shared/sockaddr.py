"""IPv4/IPv6 socket addresses as raw bytes, and the port maps of `-p` and `-n`.

bind/connect hand the kernel a `struct sockaddr_in` or `sockaddr_in6` whose port
is in network byte order at offset 2 for both families; a v4-mapped IPv6
address (`::ffff:a.b.c.d`) is the same port field. These are pure functions so
the port rewriting is tested without a tracee.
"""

from __future__ import annotations

import socket
import struct

from ocirun.util.records import dataclass, field

AF_INET = socket.AF_INET  # 2
AF_INET6 = socket.AF_INET6  # 10
SOCKADDR_IN_SIZE = 16
SOCKADDR_IN6_SIZE = 28
_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


@dataclass(frozen=True)
class InetAddr:
    family: int
    host: str  # textual address ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    port: int
    v4_mapped: bool = False


def parse(buf: bytes) -> InetAddr | None:
    """Decode an AF_INET/AF_INET6 sockaddr; None for other families or short buffers."""
    if len(buf) < 2:
        return None
    (family,) = struct.unpack_from("=H", buf, 0)
    if family == AF_INET and len(buf) >= 8:
        (port,) = struct.unpack_from("!H", buf, 2)
        return InetAddr(AF_INET, socket.inet_ntop(AF_INET, buf[4:8]), port)
    if family == AF_INET6 and len(buf) >= 24:
        (port,) = struct.unpack_from("!H", buf, 2)
        raw = bytes(buf[8:24])
        return InetAddr(
            AF_INET6, socket.inet_ntop(AF_INET6, raw), port, raw.startswith(_V4_MAPPED_PREFIX)
        )
    return None


def with_port(buf: bytes, port: int) -> bytes:
    """The same sockaddr (either family) with another port."""
    out = bytearray(buf)
    struct.pack_into("!H", out, 2, port)
    return bytes(out)


def build(family: int, host: str, port: int) -> bytes:
    """A sockaddr for tests and for the tracer's own sockets."""
    if family == AF_INET:
        return struct.pack("=H", AF_INET) + struct.pack("!H", port) + socket.inet_pton(
            AF_INET, host
        ) + b"\x00" * 8
    return (
        struct.pack("=H", AF_INET6)
        + struct.pack("!HI", port, 0)
        + socket.inet_pton(AF_INET6, host)
        + struct.pack("=I", 0)
    )


def parse_port_specs(specs: list[str] | tuple[str, ...]) -> dict[int, int]:
    """`-p` values: each "in:out", several per value separated by blanks (PRoot's form)."""
    ports: dict[int, int] = {}
    for spec in specs:
        for item in spec.split():
            left, sep, right = item.partition(":")
            if not sep:
                raise ValueError(f"port mapping {item!r} is not of the form port_in:port_out")
            try:
                port_in, port_out = int(left), int(right)
            except ValueError:
                raise ValueError(f"port mapping {item!r}: ports must be numbers") from None
            for port in (port_in, port_out):
                if not 0 < port < 65536:
                    raise ValueError(f"port mapping {item!r}: port {port} out of range")
            ports[port_in] = port_out
    return ports


def family_class(addr: InetAddr) -> int:
    """Which stack a socket address lands on: v4-mapped v6 addresses are IPv4 traffic."""
    return AF_INET if addr.family == AF_INET or addr.v4_mapped else AF_INET6


@dataclass
class PortMap:
    """The guest's view of ports: guest port -> host port, shared by the whole guest tree.

    Static entries come from `-p`; `-n` adds dynamic entries keyed also by the
    address family, because an IPv4 and an IPv6 server may both ask for the same
    port and get different ones from the kernel.
    """

    static: dict[int, int] = field(default_factory=dict)
    dynamic: dict[tuple[int, int], int] = field(default_factory=dict)

    def for_bind(self, port: int) -> int | None:
        """Host port a bind to guest `port` uses, or None to leave it alone."""
        return self.static.get(port)

    def for_connect(self, addr: InetAddr) -> int | None:
        """Host port a connect/sendto to guest `addr.port` reaches, or None."""
        port = addr.port
        if port in self.static:
            return self.static[port]
        cls = family_class(addr)
        if (cls, port) in self.dynamic:
            return self.dynamic[(cls, port)]
        # A dual-stack IPv6 listener also serves IPv4 clients, and the other way round
        # a client may use ::ffff:... to reach an IPv4 listener: any family will do.
        for (_, guest_port), host_port in self.dynamic.items():
            if guest_port == port:
                return host_port
        return None

    def record(self, addr: InetAddr, host_port: int) -> None:
        """`-n`: the kernel gave `host_port` to a bind the guest asked on `addr.port`."""
        if addr.port != 0 and host_port != addr.port:
            self.dynamic[(family_class(addr), addr.port)] = host_port

    def guest_port(self, host_port: int, addr: InetAddr | None = None) -> int | None:
        """Reverse map for getsockname/getpeername/accept results, or None."""
        if addr is not None:
            cls = family_class(addr)
            for (fam, guest_port), hp in self.dynamic.items():
                if hp == host_port and fam == cls:
                    return guest_port
        for (_, guest_port), hp in self.dynamic.items():
            if hp == host_port:
                return guest_port
        for guest_port, hp in self.static.items():
            if hp == host_port:
                return guest_port
        return None

    def forget(self, host_port: int) -> None:
        """A dynamic mapping whose host port is no longer bound."""
        for key in [k for k, v in self.dynamic.items() if v == host_port]:
            del self.dynamic[key]
