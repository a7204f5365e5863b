"""sockaddr decoding/rewriting and the port maps of -p/-n, against real sockets."""

from __future__ import annotations

import socket

import pytest

from ocirun.engine.extensions.shared import sockaddr as sa


def test_parse_ipv4_and_rewrite_port():
    raw = sa.build(socket.AF_INET, "127.0.0.1", 8080)
    addr = sa.parse(raw)
    assert addr == sa.InetAddr(socket.AF_INET, "127.0.0.1", 8080)
    new = sa.with_port(raw, 9090)
    assert sa.parse(new).port == 9090
    assert new[4:] == raw[4:] and len(new) == len(raw)


def test_parse_ipv6_and_v4_mapped():
    a6 = sa.parse(sa.build(socket.AF_INET6, "::1", 443))
    assert (a6.family, a6.host, a6.port, a6.v4_mapped) == (socket.AF_INET6, "::1", 443, False)
    m = sa.parse(sa.build(socket.AF_INET6, "::ffff:127.0.0.1", 80))
    assert m.v4_mapped and m.port == 80
    assert sa.family_class(m) == socket.AF_INET


def test_other_families_and_short_buffers_are_ignored():
    assert sa.parse(b"\x01\x00/tmp/sock\x00") is None  # AF_UNIX
    assert sa.parse(b"\x02") is None
    assert sa.parse(b"\x02\x00\x1f") is None


def test_rewritten_sockaddr_is_accepted_by_the_kernel():
    """A rewritten address binds for real (v4 and v6), on the rewritten port."""
    for family, host in [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]:
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        raw = sa.with_port(sa.build(family, host, 1), port)
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, sa.parse(raw).port))
            assert s.getsockname()[1] == port
        finally:
            s.close()


def test_parse_port_specs():
    assert sa.parse_port_specs(["80:8080", "443:8443 53:5353"]) == {80: 8080, 443: 8443, 53: 5353}
    for bad in ["80", "80:x", "0:1", "1:70000", "a:b"]:
        with pytest.raises(ValueError):
            sa.parse_port_specs([bad])


def test_portmap_static_and_dynamic():
    pm = sa.PortMap(static={80: 8080})
    v4 = sa.InetAddr(socket.AF_INET, "127.0.0.1", 80)
    assert pm.for_bind(80) == 8080 and pm.for_connect(v4) == 8080
    assert pm.guest_port(8080) == 80
    # netcoop: an IPv4 and an IPv6 server both ask for 5000
    s4 = sa.InetAddr(socket.AF_INET, "0.0.0.0", 5000)
    s6 = sa.InetAddr(socket.AF_INET6, "::", 5000)
    pm.record(s4, 40001)
    pm.record(s6, 40002)
    assert pm.for_connect(sa.InetAddr(socket.AF_INET, "127.0.0.1", 5000)) == 40001
    assert pm.for_connect(sa.InetAddr(socket.AF_INET6, "::1", 5000)) == 40002
    assert pm.for_connect(sa.InetAddr(socket.AF_INET6, "::ffff:127.0.0.1", 5000, True)) == 40001
    assert pm.guest_port(40002, s6) == 5000
    assert pm.for_connect(sa.InetAddr(socket.AF_INET, "127.0.0.1", 5001)) is None
    pm.forget(40001)
    # only the v6 listener is left: a v4 client falls back to it (dual stack)
    assert pm.for_connect(sa.InetAddr(socket.AF_INET, "127.0.0.1", 5000)) == 40002
    pm.record(sa.InetAddr(socket.AF_INET, "0.0.0.0", 0), 40003)  # port 0 asked: nothing to map
    assert pm.guest_port(40003) is None
