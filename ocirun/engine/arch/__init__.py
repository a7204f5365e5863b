"""Per-architecture facts of the ptrace engine: one module per architecture.

An `Arch` (base.py) says what the engine must know about the host's ABI: the
seccomp AUDIT_ARCH, the syscall table module (ocirun/engine/syscalls/NAME.py),
the stack red zone below sp, the ELF machine, the register slots and the
register plumbing (a `SlotRegisters` subclass). Porting the engine to a new
architecture is a new module here (that table and, if its kernel interface
differs, a few register calls), a syscall table under
ocirun/engine/syscalls/ and its name in MODULES; nothing else in the engine
switches on the architecture.
"""

from __future__ import annotations

import os

from ocirun.engine.arch.base import Arch, SlotRegisters
from ocirun.errors import OcirunError
from ocirun.util.imports import import_module

__all__ = ["ARCHES", "Arch", "SlotRegisters", "host_arch", "native_arches"]

MODULES = ("x86_64", "aarch64", "i386")  # ocirun/engine/arch/NAME.py, each with its ARCH


class _Arches(dict):
    """name -> Arch, each module imported at its first look-up (a host needs its own
    and its compat ABIs': start-up time)."""

    def __missing__(self, name: str) -> Arch:
        if name not in MODULES:
            raise KeyError(name)
        arch = self[name] = import_module(f"ocirun.engine.arch.{name}").ARCH
        return arch


ARCHES: dict[str, Arch] = _Arches()


def native_arches(host: Arch) -> tuple[Arch, ...]:
    """The host's architecture first, then those its kernel runs natively (x86_64: i386)."""
    return (host, *(ARCHES[name] for name in host.compat))


def host_arch() -> Arch:
    machine = os.uname().machine
    try:
        return ARCHES[machine]
    except KeyError:
        raise OcirunError(f"the ptrace engine does not support this host architecture ({machine})") from None
