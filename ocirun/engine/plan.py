"""What the engine is asked to run: a plain description, built by `ocirun proot` or the runner."""

from __future__ import annotations

from ocirun.util.records import dataclass, field

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extension import Extension


@dataclass(frozen=True)
class Binding:
    """`-b host[:guest]`: the guest sees `host` at `guest`.

    deref_guest is False when the spec's guest path ended with '!' (PRoot: the
    guest path's own symlink is not dereferenced). readonly makes writes through
    the binding fail with EROFS (docker's `-v a:b:ro`).
    """

    host: str
    guest: str
    deref_guest: bool = True
    readonly: bool = False


@dataclass
class EnginePlan:
    """Everything the tracer needs; no image or CLI knowledge in here."""

    argv: list[str]  # guest command; argv[0] is a guest path or a name looked up in the guest PATH
    rootfs: str = "/"  # host path of the guest root
    bindings: list[Binding] = field(default_factory=list)
    cwd: str = "/"  # guest path of the initial working directory
    env: dict[str, str] | None = None  # None: inherit ocirun's environment
    extensions: list[Extension] = field(default_factory=list)
    qemu: list[str] | None = None  # e.g. ["qemu-aarch64-static", "-g", "1234"] for -q
    verbose: int = 0  # PRoot's -v: <0 quiet, >=2 readable syscall trace
    kill_on_exit: bool = False  # PRoot's --kill-on-exit
    seccomp: bool = True  # False (or OCIRUN_NO_SECCOMP=1): stop on every syscall
