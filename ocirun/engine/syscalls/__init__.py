"""The syscall table as data: what the engine must know about each syscall.

specs.py lists what the engine does with each path-taking syscall, by name; one
module per architecture (named by its ocirun/engine/arch/ entry) lists the
syscall NUMBERS. The tracer never switches on syscall names for path
handling: it reads `paths` (which argument is a path, which dirfd goes with it,
whether the last component is followed), `kind` (the few syscalls that need
their own handler: execve, getcwd, readlink, sockets, ...) and `invalidate`
(which translated paths the guest mutates, so the path cache must forget them).
"""

from __future__ import annotations

from ocirun.engine.arch import ARCHES, Arch
from ocirun.engine.syscalls.model import (
    FLAG_FOLLOW,
    FLAG_NOFOLLOW,
    FOLLOW,
    NOFOLLOW,
    O_NOFOLLOW,
    OPEN,
    OPENAT2,
    PathArg,
    SyscallSpec,
)
from ocirun.engine.syscalls.specs import SPECS
from ocirun.util.imports import import_module
from ocirun.util.records import dataclass, field

__all__ = [
    "FLAG_FOLLOW", "FLAG_NOFOLLOW", "FOLLOW", "NOFOLLOW", "O_NOFOLLOW", "OPEN", "OPENAT2",
    "Abi", "PathArg", "SyscallSpec", "load", "load_abi", "names",
]


def names(arch: str) -> dict[str, int]:
    """Every syscall name of `arch` -> number (not only the path ones): for extensions."""
    return dict(import_module(ARCHES[arch].syscalls).NUMBERS)


def load(arch: str) -> dict[int, SyscallSpec]:
    """nr -> spec for `arch` (a key of ocirun.engine.arch.ARCHES): the specs of
    specs.py with this architecture's numbers (a spec `only` for it, listed after the
    common one of that name, replaces it)."""
    numbers = names(arch)
    return {numbers[s.name]: _numbered(s, numbers[s.name]) for s in SPECS
            if s.name in numbers and s.only in ("", arch)}


def _numbered(spec: SyscallSpec, nr: int) -> SyscallSpec:
    """`replace(spec, nr=nr)` for this frozen record with no __post_init__, at a quarter of
    the cost (two tables of ~90 specs at every start: ~1 ms less)."""
    copy = object.__new__(SyscallSpec)
    copy.__dict__.update(spec.__dict__, nr=nr)
    return copy


@dataclass
class Abi:
    """One syscall ABI the tracer meets: an architecture with its loaded table (x86_64
    hosts meet two: their own and i386's). `trapped` and `ext_nrs` are filled by the
    tracer (the table's and the extensions' numbers)."""

    arch: Arch
    table: dict[int, SyscallSpec]
    names: dict[str, int]
    nr_names: dict[int, str]
    trapped: set[int] = field(default_factory=set)
    ext_nrs: set[int] = field(default_factory=set)


def load_abi(arch: Arch) -> Abi:
    numbers = names(arch.name)
    return Abi(arch=arch, table=load(arch.name), names=numbers, nr_names={v: k for k, v in numbers.items()})
