"""i386 programs on an x86_64 kernel (the compat ABI: int 0x80, sysenter).

A 32-bit process traced from a 64-bit tracer shows the x86_64 user_regs_struct:
the syscall number in orig_rax, the arguments in ebx, ecx, edx, esi, edi, ebp
(rbx, rcx, rdx, rsi, rdi, rbp), the result in rax. PTRACE_GET_SYSCALL_INFO and
seccomp report AUDIT_ARCH_I386 for its calls, and its code segment is
__USER32_CS. Pointers in its memory are 4 bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocirun.engine.arch import Arch
from ocirun.engine.arch.x86_64 import IP_SLOT, NR_SLOT, NREGS, RET_SLOT, SP_SLOT, UserRegs

if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

ARG_SLOTS = (5, 11, 12, 13, 14, 4)  # rbx rcx rdx rsi rdi rbp

ARCH = Arch(
    name="i386",
    audit_arch=0x40000003,  # AUDIT_ARCH_I386
    syscalls="ocirun.engine.syscalls.i386",
    elf_machine=3,  # EM_386
    regs=UserRegs(ARG_SLOTS),
    nregs=NREGS,
    arg_slots=ARG_SLOTS,
    nr_slot=NR_SLOT,
    ret_slot=RET_SLOT,
    sp_slot=SP_SLOT,
    ip_slot=IP_SLOT,
    red_zone=128,  # the i386 ABI has none; kept as on x86_64 (the scratch area is below it)
    word=4,
    cs=0x23,  # __USER32_CS
)


UTS_FIELD = 65
UTS_MACHINE = 4 * UTS_FIELD  # struct new_utsname: sysname, nodename, release, version, machine


def fix_uname(t: Tracee, sc: Syscall) -> None:
    """uname's exit for a 32-bit program: machine "x86_64" reads "i686", as under PRoot
    (and as the kernel says under `linux32`)."""
    if sc.result != 0 or not sc.args[0]:
        return
    addr = sc.args[0] + UTS_MACHINE
    try:
        if t.read(addr, 7) == b"x86_64\0":
            t.write(addr, b"i686\0")
    except OSError:
        pass
