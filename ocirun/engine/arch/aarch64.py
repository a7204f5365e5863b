"""aarch64: `user_pt_regs` (x0-x30, sp, pc, pstate) through PTRACE_GETREGSET/SETREGSET
with NT_PRSTATUS (arm64 has no PEEKUSER/POKEUSER for registers), and the syscall
number through NT_ARM_SYSTEM_CALL: x8 only names the call, changing it at a stop
changes nothing. x0 is both the first argument and the return value, so the
original x0 of a call is only known from its entry (the engine keeps it)."""

from __future__ import annotations

from ocirun.engine import ptrace as pt
from ocirun.engine.arch.base import Arch, SlotRegisters

NT_PRSTATUS = 1
NT_ARM_SYSTEM_CALL = 0x404


class RegSet(SlotRegisters):
    """A whole-set read and write for each change (two calls)."""

    def get_all(self, pid: int) -> list[int]:
        return pt.get_regset(pid, NT_PRSTATUS, self.nregs)

    def set_all(self, pid: int, regs: list[int]) -> None:
        pt.set_regset(pid, NT_PRSTATUS, regs)

    def get_nr(self, pid: int) -> int:
        v = pt.get_regset(pid, NT_ARM_SYSTEM_CALL, 1)[0] & 0xFFFFFFFF
        return v - (1 << 32) if v & 0x80000000 else v

    def set_nr(self, pid: int, nr: int) -> None:
        pt.set_regset_int(pid, NT_ARM_SYSTEM_CALL, nr)


ARCH = Arch(
    name="aarch64",
    audit_arch=0xC00000B7,  # AUDIT_ARCH_AARCH64
    syscalls="ocirun.engine.syscalls.aarch64",
    elf_machine=183,  # EM_AARCH64
    registers=RegSet,
    nregs=34,  # x0-x30, sp, pc, pstate
    arg_slots=(0, 1, 2, 3, 4, 5),  # x0-x5
    nr_slot=8,  # x8 at entry
    ret_slot=0,  # x0
    sp_slot=31,
    ip_slot=32,
    red_zone=0,  # AAPCS64 has none; pushes keep sp 16-byte aligned
    syscall_insn=4,  # svc #0
    call_nr_slot=8,  # x8
)
