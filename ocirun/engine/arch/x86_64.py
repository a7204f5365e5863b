"""x86_64: user_regs_struct slots, read and written one word at a time with
PTRACE_PEEKUSER/POKEUSER (the cheapest way to change one register)."""

from __future__ import annotations

from ocirun.engine import ptrace as pt
from ocirun.engine.arch import Arch

_MASK64 = 0xFFFFFFFFFFFFFFFF
NREGS = 27  # words in user_regs_struct
ARG_SLOTS = (14, 13, 12, 7, 9, 8)  # rdi rsi rdx r10 r8 r9
NR_SLOT = 15  # orig_rax: the syscall number as seen at entry
RET_SLOT = 10  # rax
SP_SLOT = 19
IP_SLOT = 16


class UserRegs:
    """Registers of x86_64 through PTRACE_PEEKUSER/POKEUSER and GETREGS/SETREGS (a 32-bit
    process has the same user_regs_struct, with its own argument registers)."""

    def __init__(self, arg_slots: tuple[int, ...] = ARG_SLOTS):
        self.arg_slots = arg_slots

    def get_all(self, pid: int) -> list[int]:
        return pt.get_regs(pid, NREGS)

    def set_all(self, pid: int, regs: list[int]) -> None:
        pt.set_regs(pid, regs)

    def get(self, pid: int, slot: int) -> int:
        return pt.peek_user(pid, slot)

    def set(self, pid: int, slot: int, value: int) -> None:
        pt.poke_user(pid, slot, value)

    def set_arg(self, pid: int, i: int, value: int) -> None:
        pt.poke_user(pid, self.arg_slots[i], value)

    def set_nr(self, pid: int, nr: int) -> None:
        pt.poke_user(pid, NR_SLOT, nr & _MASK64)

    def set_result(self, pid: int, value: int) -> None:
        pt.poke_user(pid, RET_SLOT, value)


ARCH = Arch(
    name="x86_64",
    audit_arch=0xC000003E,
    syscalls="ocirun.engine.syscalls.x86_64",
    elf_machine=62,  # EM_X86_64
    regs=UserRegs(),
    nregs=NREGS,
    arg_slots=ARG_SLOTS,
    nr_slot=NR_SLOT,
    ret_slot=RET_SLOT,
    sp_slot=SP_SLOT,
    ip_slot=IP_SLOT,
    red_zone=128,
    x32_bit=0x40000000,
    compat=("i386",),
    cs=0x33,  # __USER_CS
    syscall_insn=2,  # syscall (0f 05)
    call_nr_slot=10,  # rax
)
