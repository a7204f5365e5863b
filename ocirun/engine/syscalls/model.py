"""The vocabulary of the syscall table: how a path argument's last component is
treated (FOLLOW, NOFOLLOW, ...), `PathArg` and `SyscallSpec`."""

from __future__ import annotations

import os

from ocirun.util.records import dataclass, field

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
