"""Per-architecture facts of the ptrace engine: one module per architecture.

An `Arch` says what the engine must know about the host's ABI: the seccomp
AUDIT_ARCH, the syscall table module (ocirun/engine/syscalls/NAME.py), the stack
red zone below sp, the ELF machine and the register plumbing (`Registers`).
Porting the engine to a new architecture is a new module here (a table of
register facts and a `Registers` implementation), a syscall table under
ocirun/engine/syscalls/ and one line in ARCHES; nothing else in the engine
switches on the architecture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from ocirun.errors import OcirunError


class Registers(Protocol):
    """How the tracer reads and writes a stopped tracee's registers.

    Register numbers ("slots") are the architecture's own (x86_64: 8-byte words of
    user_regs_struct); the engine core only uses the named accessors.
    """

    def get_all(self, pid: int) -> list[int]:
        """Every general register, in the architecture's order."""

    def set_all(self, pid: int, regs: list[int]) -> None:
        """Write back a list got from get_all."""

    def get(self, pid: int, slot: int) -> int:
        """One register."""

    def set(self, pid: int, slot: int, value: int) -> None:
        """One register."""

    def set_arg(self, pid: int, i: int, value: int) -> None:
        """Syscall argument i (0-5) at a syscall stop."""

    def set_nr(self, pid: int, nr: int) -> None:
        """The syscall number at an entry stop (-1 (all ones): the kernel skips the call)."""

    def set_result(self, pid: int, value: int) -> None:
        """The return value the guest will see."""


@dataclass(frozen=True)
class Arch:
    """What the engine needs to know of one architecture."""

    name: str  # os.uname().machine
    audit_arch: int  # AUDIT_ARCH_* checked by the seccomp filter
    syscalls: str  # module with NUMBERS and SPECS (ocirun/engine/syscalls/)
    elf_machine: int  # e_machine of native programs
    regs: Registers
    nregs: int  # words of the register set get_all returns
    arg_slots: tuple[int, ...]  # syscall argument registers, in order
    nr_slot: int  # register holding the syscall number at entry
    ret_slot: int  # return value register
    sp_slot: int
    ip_slot: int
    red_zone: int  # bytes below sp the program may use without moving sp
    x32_bit: int = 0  # syscall-number bit of an x32 ABI call (x86_64 only)
    word: int = 8  # bytes of a pointer in the guest's memory (argv arrays, struct msghdr, auxv)
    compat: tuple[str, ...] = ()  # architectures whose programs this one runs natively (x86_64: i386)
    cs: int = 0  # the code segment selector of its user mode (x86: tells a 32-bit stop from a 64-bit one)
    # re-running the syscall instruction (Syscall.chain): its length, and the register
    # it takes the number from (x86_64: rax; nr_slot is orig_rax). 0: not supported.
    syscall_insn: int = 0
    call_nr_slot: int = -1


def _load() -> dict[str, Arch]:
    from ocirun.engine.arch import aarch64, i386, x86_64

    return {a.name: a for a in (x86_64.ARCH, aarch64.ARCH, i386.ARCH)}


ARCHES: dict[str, Arch] = _load()


def native_arches(host: Arch) -> tuple[Arch, ...]:
    """The host's architecture first, then those its kernel runs natively (x86_64: i386)."""
    return (host, *(ARCHES[name] for name in host.compat))


def host_arch() -> Arch:
    machine = os.uname().machine
    try:
        return ARCHES[machine]
    except KeyError:
        raise OcirunError(f"the ptrace engine does not support this host architecture ({machine})") from None
