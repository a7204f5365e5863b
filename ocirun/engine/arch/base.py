"""What the engine knows of one architecture (`Arch`) and the register plumbing
the architectures share (`SlotRegisters`): an architecture module is a table of
facts plus the few register calls in which its kernel interface differs."""

from __future__ import annotations

from ocirun.util.records import dataclass, field

_MASK64 = 0xFFFFFFFFFFFFFFFF


class SlotRegisters:
    """How the tracer reads and writes a stopped tracee's registers.

    Register numbers ("slots") are the architecture's own (x86_64: 8-byte words of
    user_regs_struct); the engine core only uses the named accessors. A subclass
    says how the whole set is read and written (`get_all`, `set_all`) and, where
    its kernel has a cheaper or a separate way, one register or the syscall number.
    """

    def __init__(self, arch: Arch) -> None:
        self.nregs = arch.nregs
        self.arg_slots = arch.arg_slots
        self.nr_slot = arch.nr_slot
        self.ret_slot = arch.ret_slot

    def get_all(self, pid: int) -> list[int]:
        """Every general register, in the architecture's order."""
        raise NotImplementedError

    def set_all(self, pid: int, regs: list[int]) -> None:
        """Write back a list got from get_all."""
        raise NotImplementedError

    def get(self, pid: int, slot: int) -> int:
        """One register."""
        return self.get_all(pid)[slot]

    def set(self, pid: int, slot: int, value: int) -> None:
        """One register."""
        regs = self.get_all(pid)
        regs[slot] = value
        self.set_all(pid, regs)

    def set_arg(self, pid: int, i: int, value: int) -> None:
        """Syscall argument i (0-5) at a syscall stop."""
        self.set(pid, self.arg_slots[i], value)

    def get_nr(self, pid: int) -> int:
        """The syscall number the kernel holds for the stop (signed; -1: none)."""
        v = self.get(pid, self.nr_slot)
        return v - (1 << 64) if v & (1 << 63) else v

    def set_nr(self, pid: int, nr: int) -> None:
        """The syscall number at an entry stop (-1 (all ones): the kernel skips the call)."""
        self.set(pid, self.nr_slot, nr & _MASK64)

    def set_result(self, pid: int, value: int) -> None:
        """The return value the guest will see."""
        self.set(pid, self.ret_slot, value)


@dataclass(frozen=True)
class Arch:
    """What the engine needs to know of one architecture."""

    name: str  # os.uname().machine
    audit_arch: int  # AUDIT_ARCH_* checked by the seccomp filter
    syscalls: str  # module with NUMBERS (ocirun/engine/syscalls/)
    elf_machine: int  # e_machine of native programs
    registers: type[SlotRegisters]  # the register plumbing, made into `regs` for this table
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
    regs: SlotRegisters = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regs", self.registers(self))
