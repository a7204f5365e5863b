"""PRoot's rules for the order of its options and for the guest's start, as `ocirun proot` follows them.

- `-r`, `-R`, `-S` and `-b HOST:/` all choose the guest root: the last one given wins.
- `-i`, `-0` and `-S` all choose the identity: the last one given wins (with PRoot's warning).
- The guest starts in the caller's working directory when that path exists in the guest,
  else in `/` with a warning; a relative `-w` is taken from the caller's directory, and a
  `-w` that does not exist in the guest also falls back to `/` with the warning.
- `PWD` in the guest's environment names the directory it starts in.
- PRoot's environment variables (PROOT_ENVIRONMENT) are read here or documented in --help.

click keeps one value per option, not the order options came in, so the command
(proot_cmd.OrderedCommand, proot_argv.parse) records that order (one entry per
occurrence) for these rules.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ocirun.engine.plan import Binding
from ocirun.errors import OcirunError
from ocirun.util.log import log

ORDER_KEY = "ocirun.proot.order"
ROOT_OPTIONS = ("rootfs", "alias_r", "alias_s")
IDENTITY_OPTIONS = ("root_id", "change_id", "alias_s")

# PRoot's environment variables: what `ocirun proot` does with each (shown by --help).
PROOT_ENVIRONMENT: dict[str, str] = {
    "PROOT_NO_SECCOMP": "set: stop on every syscall instead of using a seccomp filter "
    "(same as OCIRUN_NO_SECCOMP=1).",
    "PROOT_VERBOSE": "the default of -v.",
    "PROOT_FORCE_FOREIGN_BINARY": "set to 1: with -q, host-architecture programs also run through the -q command.",
    "PROOT_TMP_DIR": "where ocirun's own temporary files go (default: TMPDIR or /tmp).",
    "PROOT_FORCE_KOMPAT": "ignored: -k always changes uname and /proc's kernel release; "
    "no missing syscall of an old kernel is emulated (this kernel has them all).",
    "PROOT_DONT_POLLUTE_ROOTFS": "ignored: ocirun never creates anything in the rootfs "
    "(missing mount points are shown from a private directory).",
}


def default_order(options: dict) -> list[str]:
    """An order for callers that built `options` by hand: aliases, -r, then the -b's."""
    order = [name for name in ("alias_r", "alias_s", "rootfs", "root_id", "change_id") if options.get(name)]
    return order + ["binds"] * len(options.get("binds") or ())


def _is_root(binding: Binding) -> bool:
    return binding.guest.rstrip("/") == ""


def root_and_bindings(options: dict, order: Sequence[str]) -> tuple[str, list[Binding]]:
    """The guest root and the bindings: the last of -r/-R/-S/-b HOST:/ gives the root."""
    from ocirun.engine.path.bindings import parse_bind_spec, recommended_bindings

    specs = list(options.get("binds") or ())
    rootfs = "/"
    recommended: list[Binding] = []
    bindings: list[Binding] = []
    n_binds = 0
    for name in order:
        if name == "rootfs":
            rootfs = options["rootfs"]
        elif name in ("alias_r", "alias_s"):
            rootfs = options[name]
            if not os.path.isdir(rootfs):
                raise OcirunError(f"guest rootfs '{rootfs}' does not exist or is not a directory")
            recommended = recommended_bindings(rootfs, "R" if name == "alias_r" else "S")
        elif name == "binds" and n_binds < len(specs):
            try:
                binding = parse_bind_spec(specs[n_binds])
            except ValueError as exc:
                raise OcirunError(f"bad -b/--bind: {exc}") from None
            n_binds += 1
            if _is_root(binding):
                rootfs = binding.host
            else:
                bindings.append(binding)
    if not os.path.isdir(rootfs):
        raise OcirunError(f"guest rootfs '{rootfs}' does not exist or is not a directory")
    return os.path.abspath(rootfs), recommended + bindings


def resolve_identity(options: dict, order: Sequence[str], quiet: bool = False) -> None:
    """Keep only the last of -i/-0/-S as the identity (PRoot warns when there are several)."""
    given = [name for name in order if name in IDENTITY_OPTIONS]
    if len(given) > 1 and not quiet:
        warn("option -i/-0/-S was already specified, only the last one is enabled")
    if given and given[-1] != "change_id":
        options["change_id"] = None
    elif given:
        options["root_id"] = False


def warn(message: str) -> None:
    log.warning(message)


def caller_cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None  # the caller's directory was removed


def wanted_cwd(requested: str | None) -> str:
    """The guest path the guest should start in: -w (relative to the caller's directory) or that directory."""
    here = caller_cwd() or "/"
    if not requested:
        return here
    return os.path.normpath(os.path.join(here, requested))


def guest_dir_exists(rootfs: str, bindings: list[Binding], guest: str) -> str | None:
    """The canonical guest path of directory `guest`, None when the guest has no such directory."""
    from ocirun.engine.path.errors import GuestPathError
    from ocirun.engine.path.translator import PathTranslator

    translator = PathTranslator(rootfs, bindings)
    try:
        canonical = translator.canonical(guest, "/", True)
        host = translator.to_host(canonical, "/", True)
        return canonical if os.path.isdir(host) else None
    except (GuestPathError, OSError):
        return None
    finally:
        translator.close()


def starting_directory(rootfs: str, bindings: list[Binding], requested: str | None, quiet: bool = False) -> str:
    """Where the guest starts (PRoot: the wanted directory if the guest has it, else / with a warning)."""
    wanted = wanted_cwd(requested)
    if wanted == "/" or guest_dir_exists(rootfs, bindings, wanted) is not None:
        return wanted
    if not quiet:
        warn(f"can't chdir(\"{wanted}\") in the guest rootfs: No such file or directory; "
             "the working directory is now \"/\"")
    return "/"


def env_flag(name: str) -> bool:
    """A PRoot variable that counts when set to anything but empty or 0."""
    return os.environ.get(name, "") not in ("", "0")


def proot_verbose(value: int | None) -> int:
    """-v, else PROOT_VERBOSE, else 0."""
    if value is not None:
        return value
    try:
        return int(os.environ.get("PROOT_VERBOSE", "0") or 0)
    except ValueError:
        return 0


def apply_tmp_dir() -> None:
    """PROOT_TMP_DIR: where ocirun's own temporary files go."""
    tmp = os.environ.get("PROOT_TMP_DIR")
    if tmp:
        import tempfile

        if not os.path.isdir(tmp):
            raise OcirunError(f"PROOT_TMP_DIR '{tmp}' is not a directory")
        tempfile.tempdir = tmp


def help_epilog() -> str:
    """The --help section that says what each PROOT_* variable does here."""
    lines = ["\b", "Environment (PRoot's variables):"]
    lines += [f"  {name}: {what}" for name, what in PROOT_ENVIRONMENT.items()]
    return "\n".join(lines)
