"""i386 programs on an x86_64 kernel (the compat ABI: int 0x80, sysenter).

A 32-bit process traced from a 64-bit tracer shows the x86_64 user_regs_struct:
the syscall number in orig_rax, the arguments in ebx, ecx, edx, esi, edi, ebp
(rbx, rcx, rdx, rsi, rdi, rbp), the result in rax. PTRACE_GET_SYSCALL_INFO and
seccomp report AUDIT_ARCH_I386 for its calls, and its code segment is
__USER32_CS. Pointers in its memory are 4 bytes.
"""

from __future__ import annotations

from ocirun.engine.arch.x86_64 import ARCH as X86_64
from ocirun.util.records import replace

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


# The x86_64 register set, with i386's argument registers and ABI.
ARCH = replace(
    X86_64,
    name="i386",
    audit_arch=0x40000003,  # AUDIT_ARCH_I386
    syscalls="ocirun.engine.syscalls.i386",
    elf_machine=3,  # EM_386
    arg_slots=(5, 11, 12, 13, 14, 4),  # rbx rcx rdx rsi rdi rbp
    red_zone=128,  # the i386 ABI has none; kept as on x86_64 (the scratch area is below it)
    x32_bit=0,
    word=4,
    compat=(),
    cs=0x23,  # __USER32_CS
    syscall_insn=0,  # re-running int 0x80/sysenter is not supported
    call_nr_slot=-1,
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
