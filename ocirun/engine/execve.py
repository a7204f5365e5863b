"""execve as the engine performs it: shebang lines, ELF interpreters, QEMU hook.

The kernel opens a script's interpreter and an ELF's PT_INTERP itself, on the
host, with no syscall the tracer could rewrite. So the engine decides the
whole chain at the execve entry stop, in the guest's file system:

  script  -> "#!interp [one arg]" (Linux rule), repeated up to MAX_CHAIN times
  ELF     -> one the host runs natively (x86_64: i386 too, 32-bit ELF):
          -> static (no PT_INTERP): the kernel executes the host file directly
          -> dynamic: the kernel executes the guest's loader (PT_INTERP looked
             up in the guest): `ld.so --argv0 ARGV0 PROGRAM ARGS...` when the
             loader knows --argv0 (glibc >= 2.33, musl), `ld.so PROGRAM ARGS`
             otherwise; the loader then opens PROGRAM through the tracer.
  foreign -> ExecPlanner.foreign(plan, elf) (QEMU's hook, ocirun/engine/qemu/hook.py) turns
             the plan into an exec of qemu-user; without it: ENOEXEC.

The result is an ExecPlan; the tracer writes it into the tracee and records
plan.guest_path as the program /proc/self/exe must name.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Callable

from ocirun.engine.path.errors import GuestPathError
from ocirun.util.records import dataclass, field

MAX_CHAIN = 4  # interpreters of interpreters, as Linux allows
BINPRM_BUF_SIZE = 256

EM_386 = 3
EM_ARM = 40
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
# e_machine of the programs a host's kernel runs and the engine traces (x86_64: i386 too)
HOST_MACHINES = {"x86_64": (EM_X86_64, EM_386), "aarch64": (EM_AARCH64,)}
PT_INTERP = 3


@dataclass(frozen=True)
class ElfInfo:
    """What the engine needs from an ELF header."""

    machine: int  # e_machine (EM_*)
    elf64: bool
    little_endian: bool
    interp: str | None  # PT_INTERP (a guest path), None for static programs
    etype: int  # ET_EXEC 2, ET_DYN 3


def read_elf(host_path: str, head: bytes | None = None) -> ElfInfo | None:
    """Parse the ELF header and PT_INTERP of a host file; None if not an ELF."""
    try:
        with open(host_path, "rb") as f:
            hdr = head if head is not None and len(head) >= 64 else f.read(64)

            def read_at(offset: int, size: int) -> bytes:
                f.seek(offset)
                return f.read(size)

            return parse_elf(hdr, read_at)
    except (OSError, struct.error):
        return None


def parse_elf(hdr: bytes, read_at: Callable[[int, int], bytes]) -> ElfInfo | None:
    """ElfInfo from the header `hdr` (64 bytes or the whole file) and the file's other
    bytes as read_at(offset, size) returns them; None if not an ELF. Raises struct.error
    on a truncated table."""
    if len(hdr) < 52 or hdr[:4] != b"\x7fELF":
        return None
    elf64 = hdr[4] == 2
    le = hdr[5] == 1
    e = "<" if le else ">"
    etype, machine = struct.unpack_from(e + "HH", hdr, 16)
    if elf64:
        phoff = struct.unpack_from(e + "Q", hdr, 0x20)[0]
        phentsize, phnum = struct.unpack_from(e + "HH", hdr, 0x36)
    else:
        phoff = struct.unpack_from(e + "I", hdr, 0x1C)[0]
        phentsize, phnum = struct.unpack_from(e + "HH", hdr, 0x2A)
    interp = None
    if phnum and phentsize:
        table = read_at(phoff, phentsize * phnum)
        for i in range(phnum):
            off = i * phentsize
            p_type = struct.unpack_from(e + "I", table, off)[0]
            if p_type != PT_INTERP:
                continue
            if elf64:
                p_offset = struct.unpack_from(e + "Q", table, off + 8)[0]
                p_filesz = struct.unpack_from(e + "Q", table, off + 32)[0]
            else:
                p_offset = struct.unpack_from(e + "I", table, off + 4)[0]
                p_filesz = struct.unpack_from(e + "I", table, off + 16)[0]
            raw = read_at(p_offset, min(p_filesz, 4096))
            interp = raw.split(b"\0")[0].decode("utf-8", "surrogateescape")
            break
    return ElfInfo(machine=machine, elf64=elf64, little_endian=le, interp=interp, etype=etype)


def parse_shebang(head: bytes) -> tuple[str, str | None] | None:
    """Linux's rule: '#!' then the interpreter, then at most one argument (the
    rest of the line, trimmed). None if `head` is not a script."""
    if not head.startswith(b"#!"):
        return None
    line = head[2:BINPRM_BUF_SIZE].split(b"\n", 1)[0]
    line = line.strip(b" \t\r")
    if not line:
        return None
    parts = line.replace(b"\t", b" ").split(b" ", 1)
    interp = parts[0].decode("utf-8", "surrogateescape")
    arg = parts[1].strip(b" \t").decode("utf-8", "surrogateescape") if len(parts) > 1 else ""
    return interp, (arg or None)


_argv0_cache: dict[tuple[str, int, float], bool] = {}


def loader_supports_argv0(host_loader: str) -> bool:
    """glibc >= 2.33 and musl loaders take --argv0; their usage text names it."""
    try:
        st = os.stat(host_loader)
    except OSError:
        return False
    key = (host_loader, st.st_ino, st.st_mtime)
    hit = _argv0_cache.get(key)
    if hit is None:
        try:
            with open(host_loader, "rb") as f:
                hit = b"--argv0" in f.read()
        except OSError:
            hit = False
        _argv0_cache[key] = hit
    return hit


@dataclass
class ExecPlan:
    """What the kernel is asked to execute for one guest execve.

    host_path: the host file the kernel executes (program, loader or qemu).
    argv: the full argv the kernel gets.
    guest_path: the guest program /proc/self/exe must name (canonical guest path).
    program_host: host path of that program.
    elf: its ELF facts (None for a foreign/unknown file handed to a hook).
    chain: guest paths of the scripts and interpreters followed, in order.
    """

    host_path: str
    argv: list[str]
    guest_path: str
    program_host: str
    elf: ElfInfo | None = None
    chain: list[str] = field(default_factory=list)
    # the loader's own words at the front of argv: (how many, what stands for them),
    # so /proc/PID/cmdline can show the program's argv (ps)
    loader_words: tuple[int, list[str]] | None = None
    env: list[str] | None = None  # QEMU: the guest's environment, read only when QEMU is on
    new_env: list[str] | None = None  # QEMU: the environment to exec with (None: unchanged)


# a hook that turns a plan for a foreign-architecture ELF into a runnable one
ForeignHandler = Callable[[ExecPlan, ElfInfo | None], ExecPlan]


class ExecPlanner:
    """Builds ExecPlans in the guest file system.

    to_host(guest, cwd, follow_last) and to_guest(host) are the translator's;
    `foreign` is the one place where QEMU is inserted (None: foreign ELFs fail
    with ENOEXEC, as on a kernel without binfmt_misc).
    """

    def __init__(self, to_host: Callable[..., str], to_guest: Callable[[str], str | None],
                 host_machine: str = "x86_64", foreign: ForeignHandler | None = None,
                 host_program: ForeignHandler | None = None):
        self.to_host = to_host
        self.to_guest = to_guest
        self.native_ems = HOST_MACHINES.get(host_machine, (EM_X86_64,))
        self.foreign = foreign
        # QEMU (-q): host-architecture programs use the host's loader and libraries (qemu/hook.py)
        self.host_program = host_program

    def _open_exec(self, guest: str, cwd: str, ids: tuple[int, int] | None) -> tuple[str, bytes]:
        """Resolve a guest path to an executable host file; return it and its first bytes.
        ids: the caller's (tgid, tid), whom /proc/self names (fexecve's /proc/self/fd/N)."""
        host = self.to_host(guest, cwd, True, *ids) if ids else self.to_host(guest, cwd, True)
        try:
            st = os.stat(host)
        except FileNotFoundError:
            raise GuestPathError(errno.ENOENT) from None
        except NotADirectoryError:
            raise GuestPathError(errno.ENOTDIR) from None
        except OSError as exc:
            raise GuestPathError(exc.errno or errno.EACCES) from None
        if not stat.S_ISREG(st.st_mode) or not os.access(host, os.X_OK):
            raise GuestPathError(errno.EACCES)
        try:
            with open(host, "rb") as f:
                head = f.read(BINPRM_BUF_SIZE)
        except OSError as exc:
            raise GuestPathError(exc.errno or errno.EACCES) from None
        return host, head

    def plan(self, guest_path: str, argv: list[str], cwd: str, env: list[str] | None = None,
             ids: tuple[int, int] | None = None) -> ExecPlan:
        """The ExecPlan for execve(guest_path, argv) by a process in guest `cwd` (ids:
        its tgid and tid); raises GuestPathError(errno) where the kernel would fail."""
        chain: list[str] = []
        path = guest_path
        argv = list(argv)
        for _ in range(MAX_CHAIN + 1):
            host, head = self._open_exec(path, cwd, ids)
            shebang = parse_shebang(head)
            if shebang is None:
                break
            interp, arg = shebang
            chain.append(path)
            argv = [interp] + ([arg] if arg is not None else []) + [path] + argv[1:]
            path = interp
        else:
            raise GuestPathError(errno.ELOOP)
        guest_canon = self.to_guest(host) or path
        elf = read_elf(host, head)
        plan = ExecPlan(host_path=host, argv=argv, guest_path=guest_canon, program_host=host, elf=elf, chain=chain,
                        env=env)
        if elf is None:  # neither ELF nor script: ENOEXEC, unless -q takes it (PRoot)
            if self.foreign is None:
                raise GuestPathError(errno.ENOEXEC)
            return self.foreign(plan, None)
        if elf.machine not in self.native_ems:
            if self.foreign is None:
                raise GuestPathError(errno.ENOEXEC)
            return self.foreign(plan, elf)
        if self.host_program is not None:  # QEMU on: mixed mode (qemu/hook.py)
            return self.host_program(plan, elf)
        if elf.interp:
            return self._with_loader(plan, path, elf.interp, cwd)
        return plan

    def _with_loader(self, plan: ExecPlan, program: str, interp: str, cwd: str) -> ExecPlan:
        """Run the guest's own dynamic loader on the program."""
        loader_host = self.to_host(interp, "/", True)
        if not os.path.isfile(loader_host):
            raise GuestPathError(errno.ENOENT)
        prog = program if program.startswith("/") else cwd.rstrip("/") + "/" + program
        argv0 = plan.argv[0] if plan.argv else program
        if loader_supports_argv0(loader_host):
            argv = [interp, "--argv0", argv0, prog] + plan.argv[1:]
            plan.loader_words = (4, [argv0])
        else:
            argv = [interp, prog] + plan.argv[1:]
            plan.loader_words = (1, [])
        plan.host_path = loader_host
        plan.argv = argv
        return plan
