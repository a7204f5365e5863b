"""AF_UNIX socket addresses: guest paths in struct sockaddr_un translated for the
kernel (bind, connect, sendto, sendmsg) and back (getsockname, getpeername,
accept). A host path too long for sun_path (108 bytes) is reached through a short
alias: a symlink to its directory in the tracer's scratch directory, as PRoot does."""

from __future__ import annotations

import errno
import os
import struct

from ocirun.engine.path.errors import GuestPathError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.scratch import ScratchDir
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

ENC = "surrogateescape"
AF_UNIX = 1
SUN_PATH_MAX = 108
MSGHDR_SIZE = 56
MSGHDR32_SIZE = 28  # i386's struct msghdr: seven 4-byte fields


class UnixSockets:
    def __init__(self, scratch: ScratchDir):
        self.scratch = scratch
        self.aliases: dict[str, str] = {}  # alias -> host dir

    def alias(self, host: str) -> str:
        """A path under 108 bytes naming `host`: its directory through a symlink."""
        base = self.scratch.get()
        parent, _, name = host.rpartition("/")
        alias = next((a for a, target in self.aliases.items() if target == parent), None)
        if alias is None:
            alias = f"{base}/{len(self.aliases)}"
            os.symlink(parent or "/", alias)
            self.aliases[alias] = parent
            self.scratch.entries.add(alias)
        out = alias + "/" + name
        if len(out.encode("utf-8", ENC)) >= SUN_PATH_MAX:
            raise GuestPathError(errno.ENAMETOOLONG)
        return out

    def unalias(self, host: str) -> str:
        for alias, target in self.aliases.items():
            if host == alias or host.startswith(alias + "/"):
                return target + host[len(alias):]
        return host

    def _translate(self, t: Tracee, sc: Syscall, addr: int, length: int, creating: bool) -> bytes | None:
        """A new struct sockaddr_un for the host, or None when nothing changes."""
        if not addr or length <= 2 or length > 128:
            return None
        data = t.read(addr, length)
        if len(data) < 3 or struct.unpack_from("<H", data)[0] != AF_UNIX or data[2] == 0:
            return None  # not AF_UNIX, or an abstract socket
        raw = data[2:].split(b"\0", 1)[0]
        guest = raw.decode("utf-8", ENC)
        base = "/" if guest.startswith("/") else t.guest_cwd()
        host = t.view.translator.to_host(guest, base, not creating, t.tgid, t.pid)
        sc.guest_paths[sc.spec.sockaddr[0] if sc.spec.sockaddr else 1] = guest
        sc.host_paths[sc.spec.sockaddr[0] if sc.spec.sockaddr else 1] = host
        if host == guest:
            return None
        if guest[0] != "/":
            here = t.host_cwd()
            if here is not None and host == (here.rstrip("/") + "/" + guest):
                return None  # relative to the real cwd the kernel finds the same file (even past 108 bytes)
        hb = host.encode("utf-8", ENC)
        if len(hb) >= SUN_PATH_MAX:
            hb = self.alias(host).encode("utf-8", ENC)
        return struct.pack("<H", AF_UNIX) + hb + b"\0"

    def enter_sockaddr(self, t: Tracee, sc: Syscall) -> None:
        """bind, connect, sendto: the address argument."""
        a, ln = sc.spec.sockaddr
        new = self._translate(t, sc, sc.args[a], sc.args[ln], sc.spec.name == "bind")
        if new is not None:
            sc.set_arg(a, sc.push(new))
            sc.set_arg(ln, len(new))

    def enter_sendmsg(self, t: Tracee, sc: Syscall) -> None:
        """sendmsg: msg_name of the struct msghdr (a copy points at the new address)."""
        msg = sc.args[1]
        if not msg:
            return
        head = "<II" if sc.arch.word == 4 else "<QI"  # msg_name, msg_namelen
        size = MSGHDR_SIZE if sc.arch.word == 8 else MSGHDR32_SIZE
        hdr = t.read(msg, size)
        if len(hdr) < size:
            return
        name, namelen = struct.unpack_from(head, hdr, 0)
        new = self._translate(t, sc, name, namelen, False)
        if new is not None:
            name_addr = sc.push(new)
            fixed = struct.pack(head, name_addr, len(new))
            sc.set_arg(1, sc.push(fixed + hdr[len(fixed):]))

    def enter_sockname(self, t: Tracee, sc: Syscall) -> None:
        """getsockname, getpeername, accept: the address comes back at the exit."""
        a, ln = sc.spec.sockaddr
        if sc.args[a] and sc.args[ln]:
            try:
                sc.notes["buflen"] = t.read_u32(sc.args[ln])
            except OSError:
                return
            sc.want_exit()

    def fix_sockname(self, t: Tracee, sc: Syscall) -> None:
        """Reverse-translate an AF_UNIX address the kernel wrote back."""
        a, ln = sc.spec.sockaddr
        addr, lenp = sc.args[a], sc.args[ln]
        if not addr or not lenp:
            return
        buflen = sc.notes.get("buflen", 0)
        try:
            outlen = t.read_u32(lenp)
            data = t.read(addr, min(buflen, outlen, 110))
        except OSError:
            return
        if len(data) < 3 or struct.unpack_from("<H", data)[0] != AF_UNIX or data[2] == 0:
            return
        host = data[2:].split(b"\0", 1)[0].decode("utf-8", ENC)
        guest = t.view.to_guest(host)
        if guest is None or guest == host:
            return
        new = struct.pack("<H", AF_UNIX) + guest.encode("utf-8", ENC) + b"\0"
        t.write(addr, new[:buflen])
        t.write_u32(lenp, len(new))
