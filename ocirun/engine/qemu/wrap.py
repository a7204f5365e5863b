"""How an execve becomes an execve of QEMU (foreign program) or of the host's loader (host program).

This is PRoot's `-q` model. When QEMU is on, the guest sees the host's `/` at
`/host-rootfs`, and:

- a foreign program (ELF machine not the host's) runs as
  `QEMU [QEMU ARGS] -0 ARGV0 [-E LD_X=..] GUEST_PATH ARGS...`. QEMU is a host
  program, but it runs under the engine like every guest process, so its opens of
  GUEST_PATH, of the guest's ELF interpreter and libraries and of every file the
  emulated program names are translated into the guest rootfs. QEMU emulates
  `/proc/self/exe` itself (it answers with the guest program's path), and a guest
  execve is a real execve of QEMU's, which comes back here: re-execs, shells and
  shebang scripts with foreign interpreters all go through QEMU again.
  QEMU's own path prefix (`-L`, QEMU_LD_PREFIX, default /etc/qemu-binfmt/ARCH) is
  not used: the engine already translates every path. It is switched off with
  `-L /`, else QEMU tries PREFIX/PATH with an access() before every path the guest
  names (about 40% more stops on exec-heavy work), unless the user set a prefix.
- a host program (mixed mode: a host tool bound in, or anything under
  /host-rootfs) runs natively; its ELF interpreter and libraries are the host's,
  so a dynamically linked one runs as
  `HOST_LD.SO --library-path /host-rootfs/lib/... --argv0 ARGV0 GUEST_PATH ARGS...`
  (the interpreter file is handed to the kernel as a host path; ld.so opens the
  program and libraries through the engine, hence the /host-rootfs names).
- a dynamically linked QEMU (Debian's qemu-user) is such a host program itself:
  it is started by the host's ld.so the same way, with the QEMU arguments after it.

Environment: QEMU passes its own environment on to the guest. Variables that
would change how the host loader or QEMU itself behaves (`LD_*`) are taken out
of QEMU's environment and handed to the guest with `-E NAME=VALUE`, so an arm64
LD_PRELOAD/LD_LIBRARY_PATH reaches the arm64 program and not the x86_64 loader.
QEMU splits -E values at commas, so a variable whose value has a comma stays in
the environment (a static QEMU ignores it; only the host loader could read it).
QEMU_* variables are left alone: they are how a user talks to QEMU.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from functools import lru_cache

from ocirun.engine.plan import Binding, EnginePlan
from ocirun.engine.qemu.arch import (
    Arch,
    ElfId,
    arch_by_name,
    arch_for_elf,
    host_arch,
    runs_natively,
)
from ocirun.engine.qemu.elfinfo import interp_of
from ocirun.engine.qemu.locate import QemuCommand, describe, find_qemu
from ocirun.errors import OcirunError
from ocirun.util.records import dataclass, field

HOST_ROOTFS = "/host-rootfs"

# Variables moved from QEMU's environment to the guest's (prefixes).
GUEST_ONLY_ENV_PREFIXES: tuple[str, ...] = ("LD_",)

# Library directories of a host whose /etc/ld.so.conf says nothing more (glibc defaults).
DEFAULT_LIB_DIRS: tuple[str, ...] = ("/lib64", "/usr/lib64", "/lib", "/usr/lib")


def host_rootfs_binding() -> Binding:
    """`-b /:/host-rootfs`, which `-q` implies (as in PRoot)."""
    return Binding(host="/", guest=HOST_ROOTFS)


def add_host_rootfs(plan: EnginePlan) -> EnginePlan:
    """Add the /host-rootfs binding to a plan that uses QEMU (once); returns the plan."""
    if plan.qemu and not any(b.guest.rstrip("/") == HOST_ROOTFS for b in plan.bindings):
        plan.bindings.append(host_rootfs_binding())
    return plan


def _ld_conf_dirs(conf: str, seen: set[str]) -> list[str]:
    """Directories listed in an ld.so.conf file, following `include` globs."""
    if conf in seen:
        return []
    seen.add(conf)
    out: list[str] = []
    try:
        with open(conf) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include "):
            pattern = line[len("include ") :].strip()
            if not pattern.startswith("/"):
                pattern = os.path.join(os.path.dirname(conf), pattern)
            for inc in sorted(glob.glob(pattern)):
                out += _ld_conf_dirs(inc, seen)
        elif line.startswith("/"):
            out.append(line)
    return out


@lru_cache(maxsize=1)
def host_library_dirs() -> tuple[str, ...]:
    """The host loader's search directories (ld.so.conf, then the defaults), existing ones only."""
    dirs: list[str] = []
    for d in _ld_conf_dirs("/etc/ld.so.conf", set()) + list(DEFAULT_LIB_DIRS):
        if os.path.isdir(d) and d not in dirs:
            dirs.append(d)
    return tuple(dirs)


def on_host(path: str) -> str:
    """The guest's name of a host path when QEMU is on (`/usr/bin/x` -> `/host-rootfs/usr/bin/x`)."""
    return HOST_ROOTFS + path if path != "/" else HOST_ROOTFS


def host_loader_argv(interp: str, argv0: str, guest_program: str) -> list[str]:
    """argv for running a dynamically linked host program through the host's ld.so.

    `--argv0` only where the loader knows it (glibc >= 2.33, musl); older loaders give
    the program its path as argv[0], as the engine does for guest programs.
    """
    from ocirun.engine.execve import loader_supports_argv0

    libs = ":".join(on_host(d) for d in host_library_dirs())
    name = ["--argv0", argv0] if loader_supports_argv0(interp) else []
    return [on_host(interp), "--library-path", libs, *name, guest_program]


def qemu_target(command: QemuCommand) -> Arch | None:
    """The architecture a QEMU binary emulates, from its name (`qemu-aarch64[-static]`)."""
    if command.arch is not None:
        return command.arch
    name = os.path.basename(command.path)
    if not name.startswith("qemu-"):
        return None
    name = name[len("qemu-") :]
    if name.endswith("-static"):
        name = name[: -len("-static")]
    arch = arch_by_name(name)
    return arch if arch is not None and arch.qemu == name else None


@dataclass(frozen=True)
class ExecRewrite:
    """What to execve instead of the guest's program.

    host_file: the file handed to the kernel (a host path: QEMU or the host's ld.so).
    argv: the complete new argv. env: the complete new environment, None = unchanged.
    exe: the guest path of the program that really runs (what /proc/self/exe should say).
    emulated: the guest architecture when QEMU runs it, None for a native host program.
    """

    host_file: str
    argv: list[str]
    env: list[str] | None
    exe: str
    emulated: Arch | None = None


@dataclass
class QemuSetup:
    """The `-q` command of a plan, resolved once per engine run."""

    command: QemuCommand
    host: Arch = field(default_factory=host_arch)
    extra: dict[str, QemuCommand] = field(default_factory=dict)  # other targets found on demand

    @classmethod
    def from_plan(cls, plan: EnginePlan) -> QemuSetup | None:
        """None when the plan does not use QEMU; OcirunError(125) when the command is missing."""
        if not plan.qemu:
            return None
        return cls(describe(list(plan.qemu)))

    def command_for(self, arch: Arch) -> QemuCommand:
        """The plan's QEMU, or (if that one emulates another CPU) the host's QEMU for `arch`."""
        target = qemu_target(self.command)
        if target is None or target == arch:
            return self.command
        if arch.qemu not in self.extra:
            try:
                self.extra[arch.qemu] = find_qemu(arch)
            except OcirunError:
                return self.command  # let the plan's QEMU report the wrong-architecture error
        return self.extra[arch.qemu]

    def rewrite(
        self,
        guest_path: str,
        argv: Sequence[str],
        env: Sequence[str] | None,
        ident: ElfId | None,
        host_path: str,
    ) -> ExecRewrite | None:
        """The exec to do instead, or None to exec the program as the engine would without QEMU.

        guest_path: the program as the guest names it (after shebang resolution);
        host_path: the same file on the host; ident: its ELF identity (None: not ELF).
        """
        argv0 = argv[0] if argv else guest_path
        arch = arch_for_elf(ident) if ident is not None else None
        if arch is not None and runs_natively(arch, self.host) and not force_foreign():
            interp = interp_of(host_path)
            if interp is None:
                return None  # static host program: nothing to change
            return ExecRewrite(interp, [*host_loader_argv(interp, argv0, guest_path), *argv[1:]], None, guest_path)
        # foreign, unknown or not ELF at all: the -q command's business, as in PRoot
        command = self.command_for(arch) if arch is not None and not runs_natively(arch, self.host) else self.command
        return self._through_qemu(command, arch, guest_path, argv0, list(argv[1:]), env)

    def _through_qemu(
        self, qemu: QemuCommand, arch: Arch | None, guest_path: str, argv0: str, args: list[str],
        env: Sequence[str] | None,
    ) -> ExecRewrite:
        """PRoot's argv: the -q command and its arguments, then `-0 ARGV0 PROGRAM ARGS`
        (QEMU also gets `-L /` and the guest's LD_* variables as -E flags)."""
        if is_qemu(qemu):
            qemu_env, env_flags = split_guest_env(env)
            tail = [*qemu.args, *no_prefix(qemu.args, env), "-0", argv0, *env_flags, guest_path, *args]
        else:
            qemu_env, tail = None, [*qemu.args, "-0", argv0, guest_path, *args]
        if qemu.static:
            return ExecRewrite(qemu.path, [on_host(qemu.path), *tail], qemu_env, guest_path, arch)
        start = host_loader_argv(qemu.interp or "", on_host(qemu.path), on_host(qemu.path))
        return ExecRewrite(qemu.interp or "", [*start, *tail], qemu_env, guest_path, arch)


def is_qemu(command: QemuCommand) -> bool:
    """A QEMU user-mode build (its name says so), as opposed to any other -q command."""
    return command.arch is not None or os.path.basename(command.path).startswith("qemu-")


def force_foreign() -> bool:
    """PROOT_FORCE_FOREIGN_BINARY=1: host-architecture programs go through the -q command too."""
    return os.environ.get("PROOT_FORCE_FOREIGN_BINARY", "") not in ("", "0")


def no_prefix(args: Sequence[str], env: Sequence[str] | None) -> list[str]:
    """`-L /` (QEMU's path prefix off) unless the -q command or the environment sets one."""
    if "-L" in args or any(e.startswith("QEMU_LD_PREFIX=") for e in env or ()):
        return []
    return ["-L", "/"]


def split_guest_env(env: Sequence[str] | None) -> tuple[list[str] | None, list[str]]:
    """(QEMU's environment, -E flags) with the guest-only variables moved into the flags."""
    if env is None:
        return None, []
    keep: list[str] = []
    flags: list[str] = []
    for entry in env:
        name, eq, value = entry.partition("=")
        if eq and name.startswith(GUEST_ONLY_ENV_PREFIXES) and "," not in value:
            flags += ["-E", entry]
        else:
            keep.append(entry)
    if not flags:
        return None, []
    return keep, flags
