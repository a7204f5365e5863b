"""x86_64: user_regs_struct slots, read and written one word at a time with
PTRACE_PEEKUSER/POKEUSER (the cheapest way to change one register)."""

from __future__ import annotations

from ocirun.engine import ptrace as pt
from ocirun.engine.arch.base import Arch, SlotRegisters


class UserRegs(SlotRegisters):
    """GETREGS/SETREGS for the whole set, PEEKUSER/POKEUSER for one word (a 32-bit
    process has the same user_regs_struct, with its own argument registers)."""

    def get_all(self, pid: int) -> list[int]:
        return pt.get_regs(pid, self.nregs)

    def set_all(self, pid: int, regs: list[int]) -> None:
        pt.set_regs(pid, regs)

    def get(self, pid: int, slot: int) -> int:
        return pt.peek_user(pid, slot)

    def set(self, pid: int, slot: int, value: int) -> None:
        pt.poke_user(pid, slot, value)


ARCH = Arch(
    name="x86_64",
    audit_arch=0xC000003E,  # AUDIT_ARCH_X86_64
    syscalls="ocirun.engine.syscalls.x86_64",
    elf_machine=62,  # EM_X86_64
    registers=UserRegs,
    nregs=27,  # words in user_regs_struct
    arg_slots=(14, 13, 12, 7, 9, 8),  # rdi rsi rdx r10 r8 r9
    nr_slot=15,  # orig_rax: the syscall number as seen at entry
    ret_slot=10,  # rax
    sp_slot=19,
    ip_slot=16,
    red_zone=128,
    x32_bit=0x40000000,
    compat=("i386",),
    cs=0x33,  # __USER_CS
    syscall_insn=2,  # syscall (0f 05)
    call_nr_slot=10,  # rax
)
