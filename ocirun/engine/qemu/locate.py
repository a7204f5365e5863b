"""Finding the host's QEMU user-mode for an architecture, and describing it.

Order: the `OCIRUN_QEMU_<ARCH>` environment variable (a whole command, e.g.
`qemu-aarch64 -cpu max`; <ARCH> is the QEMU target upper-cased), then a
configured override, then `qemu-<arch>-static` and `qemu-<arch>` on PATH.
Whether a build is static decides how it is started under the engine (see
wrap.py): a dynamically linked QEMU needs the host's loader and libraries.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping

from ocirun.engine.qemu.arch import Arch
from ocirun.errors import EXIT_OCIRUN, OcirunError
from ocirun.util.records import dataclass, field

# File names tried on PATH, best first.
CANDIDATES: tuple[str, ...] = ("qemu-{arch}-static", "qemu-{arch}")


def env_var(arch: Arch) -> str:
    """`OCIRUN_QEMU_AARCH64` for aarch64."""
    return "OCIRUN_QEMU_" + arch.qemu.upper().replace("-", "_")


@dataclass(frozen=True)
class QemuCommand:
    """A QEMU user-mode command on the host: absolute program path plus extra arguments.

    interp: the host path of its ELF interpreter (PT_INTERP), None for a static build.
    """

    path: str
    args: tuple[str, ...] = ()
    interp: str | None = None
    arch: Arch | None = field(default=None, compare=False)

    @property
    def static(self) -> bool:
        return self.interp is None

    def argv(self) -> list[str]:
        return [self.path, *self.args]


def _resolve(word: str, path_env: str | None) -> str | None:
    """Absolute host path of a program name or path, None if absent or not executable."""
    if "/" in word:
        full = os.path.abspath(word)
        return full if os.path.isfile(full) and os.access(full, os.X_OK) else None
    found = shutil.which(word, path=path_env)
    return os.path.abspath(found) if found else None


def describe(command: str | list[str], arch: Arch | None = None, path_env: str | None = None) -> QemuCommand:
    """Turn a `-q` value (`qemu-aarch64 -g 1234`) into a QemuCommand; OcirunError if not found."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if not words:
        raise OcirunError("empty QEMU command", EXIT_OCIRUN)
    path = _resolve(words[0], path_env)
    if path is None:
        raise OcirunError(
            f"QEMU command not found: {words[0]} (QEMU user-mode: apt-get install qemu-user-static on Debian/Ubuntu)",
            EXIT_OCIRUN,
        )
    from ocirun.engine.qemu.elfinfo import interp_of

    return QemuCommand(path, tuple(words[1:]), interp_of(os.path.realpath(path)), arch)


def install_hint(arch: Arch) -> str:
    """One line: what is missing and what to install."""
    return (
        f"no QEMU user-mode emulator for {arch.platform} programs: "
        f"install the qemu-user-static package (Debian/Ubuntu: apt-get install qemu-user-static) "
        f"or set {env_var(arch)} to a qemu-{arch.qemu} command"
    )


def find_qemu(
    arch: Arch,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> QemuCommand:
    """The QEMU command for `arch` on this host; OcirunError(..., 125) when there is none.

    overrides maps a QEMU target name (`aarch64`) to a command, as a config file would.
    """
    env = os.environ if env is None else env
    path_env = env.get("PATH", os.defpath)
    for source, value in ((env_var(arch), env.get(env_var(arch))), ("config", (overrides or {}).get(arch.qemu))):
        if value:
            try:
                return describe(value, arch, path_env)
            except OcirunError as exc:
                raise OcirunError(f"{source}={value!r}: {exc.message}", EXIT_OCIRUN) from None
    for pattern in CANDIDATES:
        found = _resolve(pattern.format(arch=arch.qemu), path_env)
        if found:
            return describe([found], arch, path_env)
    raise OcirunError(install_hint(arch), EXIT_OCIRUN)
