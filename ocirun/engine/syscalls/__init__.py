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

import importlib
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocirun.engine.arch import Arch

# How the last component of a path argument is treated.
FOLLOW = "follow"  # symlink at the end is dereferenced (stat, open, chdir, ...)
NOFOLLOW = "nofollow"  # never dereferenced (lstat, unlink, rename, mkdir, symlink's linkpath, ...)
FLAG_NOFOLLOW = "flag_nofollow"  # followed unless flag_mask is set in args[flag_arg] (AT_SYMLINK_NOFOLLOW)
FLAG_FOLLOW = "flag_follow"  # followed only if flag_mask is set (linkat's AT_SYMLINK_FOLLOW)
OPEN = "open"  # open flags in args[flag_arg]: O_NOFOLLOW or O_CREAT|O_EXCL -> not followed
OPENAT2 = "openat2"  # struct open_how at args[flag_arg]

O_NOFOLLOW = os.O_NOFOLLOW  # the host's: x86_64 0o400000, aarch64 0o100000 (the engine traces the host ABI)


@dataclass(frozen=True)
class PathArg:
    """One path argument: args[arg] is a char*, relative to args[dirfd] (None = cwd)."""

    arg: int
    dirfd: int | None = None
    follow: str = FOLLOW
    flag_arg: int | None = None
    flag_mask: int = 0
    abs_only: bool = False  # translate only absolute paths (mount's source may be "proc")


@dataclass(frozen=True)
class SyscallSpec:
    """What the engine does with one syscall.

    kind: "" for plain path translation, else the name of a core handler
    ("execve", "execveat", "getcwd", "chdir", "fchdir", "readlink",
    "sockaddr", "sendmsg", "sockname", "accept").
    exit: the core always needs the exit stop (result fixed up).
    invalidate: indexes into `paths` whose host path the syscall changes (the
    path cache forgets them after the call).
    sockaddr: (pointer arg, length arg) of a struct sockaddr for socket kinds.
    """

    name: str
    nr: int
    paths: tuple[PathArg, ...] = ()
    kind: str = ""
    exit: bool = False
    invalidate: tuple[int, ...] = ()
    sockaddr: tuple[int, int] | None = None
    # let the seccomp filter ALLOW the call without a stop when it names no path:
    # ("flag", i, mask): mask set in args[i] (AT_EMPTY_PATH: glibc's fstat is
    # newfstatat(fd, "", AT_EMPTY_PATH)); ("null", i): args[i] is NULL (futimens).
    bpf_allow: tuple | None = None
    follow_open: bool = False  # opens a file to read it (open, openat, openat2): /proc/PID/cmdline fix-up
    only: str = ""  # the one architecture whose table has it ("": every one that has the name)
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def names(arch: str) -> dict[str, int]:
    """Every syscall name of `arch` -> number (not only the path ones): for extensions."""
    from ocirun.engine.arch import ARCHES

    return dict(importlib.import_module(ARCHES[arch].syscalls).NUMBERS)


def load(arch: str) -> dict[int, SyscallSpec]:
    """nr -> spec for `arch` (a key of ocirun.engine.arch.ARCHES): the specs of
    specs.py with this architecture's numbers."""
    from ocirun.engine.syscalls.specs import SPECS

    numbers = names(arch)
    return {numbers[s.name]: replace(s, nr=numbers[s.name]) for s in SPECS
            if s.name in numbers and s.only in ("", arch)}


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
