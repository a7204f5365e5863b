"""-p and -n with a real TCP server and client in the guest (perl's IO::Socket::IP),
IPv4 and IPv6, loopback only."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from tests.extensions.guest import BINDS, GUEST_ENV, LAUNCHER
from tests.helpers import REPO_ROOT, ocirun_env

SERVER = r"""
use IO::Socket::IP;
my ($host, $port, $count) = @ARGV;
my $s = IO::Socket::IP->new(LocalHost => $host, LocalPort => $port, Listen => 5, ReuseAddr => 1)
    or die "listen: $@";
$| = 1; print "listening ", $s->sockport, "\n";
for (1..$count) { my $c = $s->accept or die; my $l = <$c>; print $c "echo:$l"; close $c; }
"""
CLIENT = r"""
use IO::Socket::IP;
my ($host, $port) = @ARGV;
my $c = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port) or die "connect: $@";
print "peer ", $c->peerport, "\n"; print $c "hi\n"; print scalar <$c>;
"""


def free_port(family=socket.AF_INET) -> int:
    with socket.socket(family) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def scripts(debian_rootfs_copy):
    (debian_rootfs_copy / "tmp/srv.pl").write_text(SERVER)
    (debian_rootfs_copy / "tmp/cli.pl").write_text(CLIENT)
    return debian_rootfs_copy


def start(root, script, *opts):
    return subprocess.Popen([*LAUNCHER, "-r", str(root), *BINDS, *opts, "/bin/sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ocirun_env(GUEST_ENV), cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL)


def host_talk(family, host, port) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as c:
                c.sendall(b"from-host\n")
                return c.makefile().readline()
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_port_map_server_and_client(scripts, family, host):
    out_port = free_port(family)
    guest_port = 8080
    script = (f"perl /tmp/srv.pl {host} {guest_port} 2 & sleep 1; "
              f"perl /tmp/cli.pl {host} {guest_port}; wait")
    proc = start(scripts, script, "-p", f"{guest_port}:{out_port}")
    # The host reaches the guest server on the host port: it really is bound there.
    assert host_talk(family, host, out_port) in ("echo:from-host\n", "")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    lines = stdout.splitlines()
    # the guest sees the port it asked for, for its server and its client
    assert "listening 8080" in lines and "peer 8080" in lines and "echo:hi" in lines


@pytest.mark.parametrize("server,client", [("127.0.0.1", "127.0.0.1"), ("::1", "::1"),
                                           ("0.0.0.0", "::ffff:127.0.0.1")])
def test_netcoop_port_taken_on_the_host(scripts, server, client):
    """-n: the guest's port is busy on the host; the guest server binds elsewhere and the
    guest client, a different process started later, still reaches it by the old port."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    blocker = socket.socket(family)
    blocker.bind((server, 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    try:
        script = (f"perl /tmp/srv.pl {server} {busy} 1 & sleep 1; "
                  f"perl /tmp/cli.pl {client} {busy}; wait")
        proc = start(scripts, script, "-n")
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert stdout.splitlines() == [f"listening {busy}", f"peer {busy}", "echo:hi"]
        # without -n the same guest cannot bind
        proc = start(scripts, f"perl /tmp/srv.pl {server} {busy} 1")
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "listen" in stderr
    finally:
        blocker.close()


UDP = r"""
use IO::Socket::IP; use Socket;
my $srv = IO::Socket::IP->new(LocalHost => "127.0.0.1", LocalPort => 5300, Proto => "udp") or die "srv: $@";
my $cli = IO::Socket::IP->new(PeerHost => "127.0.0.1", PeerPort => 5300, Proto => "udp") or die "cli: $@";
$cli->send("ping");
my $from = $srv->recv(my $m, 100);
$srv->send("pong:$m", 0, $from);
my ($port) = unpack_sockaddr_in($cli->recv(my $r, 100));
print "$r $port ", $srv->sockport, "\n";
"""


def test_udp_reply_comes_from_the_guest_port(scripts):
    """-p on UDP: sendto is mapped, and a reply's source (recvfrom) shows the guest port,
    as a DNS client checks it."""
    (scripts / "tmp/udp.pl").write_text(UDP)
    host_port = free_port()
    proc = start(scripts, "perl /tmp/udp.pl", "-p", f"5300:{host_port}")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.split() == ["pong:ping", "5300", "5300"]
