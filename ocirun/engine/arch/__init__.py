"""Per-architecture facts of the ptrace engine: one module per architecture.

An `Arch` (base.py) says what the engine must know about the host's ABI: the
seccomp AUDIT_ARCH, the syscall table module (ocirun/engine/syscalls/NAME.py),
the stack red zone below sp, the ELF machine, the register slots and the
register plumbing (a `SlotRegisters` subclass). Porting the engine to a new
architecture is a new module here (that table and, if its kernel interface
differs, a few register calls), a syscall table under
ocirun/engine/syscalls/ and one line in ARCHES; nothing else in the engine
switches on the architecture.
"""

from __future__ import annotations

import os

from ocirun.engine.arch import aarch64, i386, x86_64
from ocirun.engine.arch.base import Arch, SlotRegisters
from ocirun.errors import OcirunError

__all__ = ["ARCHES", "Arch", "SlotRegisters", "host_arch", "native_arches"]


ARCHES: dict[str, Arch] = {a.name: a for a in (x86_64.ARCH, aarch64.ARCH, i386.ARCH)}


def native_arches(host: Arch) -> tuple[Arch, ...]:
    """The host's architecture first, then those its kernel runs natively (x86_64: i386)."""
    return (host, *(ARCHES[name] for name in host.compat))


def host_arch() -> Arch:
    machine = os.uname().machine
    try:
        return ARCHES[machine]
    except KeyError:
        raise OcirunError(f"the ptrace engine does not support this host architecture ({machine})") from None
