"""i386's socketcall(call, args): one syscall for every socket call, the sub-call's
arguments an array of 32-bit words in the guest's memory (glibc and busybox still
use it on i386; the direct calls exist since Linux 4.3).

The core reads the array at the entry and handles the call as the direct syscall of
that name (bind, connect, getsockname, ...): handlers and extensions see sc.name
"bind" and sc.args the unpacked arguments. An argument they change goes into a copy
of the array on the scratch stack, which the register then points to (the guest's
array is never written). The seccomp filter stops only at the sub-calls the table
traps (socketcall_rule).
"""

from __future__ import annotations

import struct

from ocirun.util.records import dataclass

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.syscalls import Abi
    from ocirun.engine.tracee import Tracee

# SYS_* of linux/net.h: sub-call -> (direct syscall, number of arguments); i386 has no
# direct accept: accept4 with flags 0 is the same call (send and recv have none either,
# and name no address)
SOCKETCALLS: dict[int, tuple[str, int]] = {
    1: ("socket", 3), 2: ("bind", 3), 3: ("connect", 3), 4: ("listen", 2), 5: ("accept4", 3),
    6: ("getsockname", 3), 7: ("getpeername", 3), 8: ("socketpair", 4), 9: ("send", 4),
    10: ("recv", 4), 11: ("sendto", 6), 12: ("recvfrom", 6), 13: ("shutdown", 2),
    14: ("setsockopt", 5), 15: ("getsockopt", 5), 16: ("sendmsg", 3), 17: ("recvmsg", 3),
    18: ("accept4", 4), 19: ("recvmmsg", 5), 20: ("sendmmsg", 4),
}
ARRAY_ARG = 1  # socketcall's second argument: the array's address


@dataclass
class MuxArgs:
    """Where a demultiplexed call's arguments live."""

    guest: int  # the guest's array
    values: list[int]
    copy: int = 0  # our copy on the scratch stack, once an argument changed

    def store(self, sc: Syscall, i: int, value: int) -> None:
        """args[i] = value, in the copy the kernel will read."""
        if i >= len(self.values):
            return
        self.values[i] = value & 0xFFFFFFFF
        data = struct.pack(f"<{len(self.values)}I", *self.values)
        if self.copy:
            sc.tracee.write(self.copy, data)
            return
        self.copy = sc.push(data)
        sc.arch.regs.set_arg(sc.tracee.pid, ARRAY_ARG, self.copy)
        sc.rewritten = {ARRAY_ARG: (self.copy, self.guest)}


def socketcall_rule(abi: Abi) -> tuple | None:
    """socketcall's bpf_allow rule: stop only at the sub-calls whose direct call is trapped."""
    calls = tuple(c for c, (name, _) in SOCKETCALLS.items() if abi.names.get(name) in abi.trapped)
    return ("oneof", 0, calls)


def demux(t: Tracee, abi: Abi, args: list[int]) -> tuple[int, list[int], MuxArgs] | None:
    """(direct syscall number, its arguments, where they live) of a socketcall; None
    when the sub-call is unknown or its array unreadable (the kernel answers it)."""
    entry = SOCKETCALLS.get(args[0] & 0xFFFFFFFF)
    nr = abi.names.get(entry[0]) if entry else None
    if entry is None or nr is None:
        return None
    n = entry[1]
    try:
        raw = t.read(args[ARRAY_ARG], 4 * n)
    except OSError:
        return None
    if len(raw) < 4 * n:
        return None
    values = list(struct.unpack(f"<{n}I", raw))
    return nr, values + [0] * (6 - n), MuxArgs(guest=args[ARRAY_ARG], values=values)
