"""The path-taking syscalls the engine translates, by name, for every architecture
(a syscall an architecture lacks, such as open or stat on aarch64, is left out
when the table is loaded with that architecture's numbers).

Read a line as: name, then each path argument with its dirfd and how its last
component is treated (see ocirun/engine/syscalls/__init__.py), then the kind of
core handler it needs, if any.
"""

from __future__ import annotations

from ocirun.engine.syscalls.model import (
    FLAG_FOLLOW,
    FLAG_NOFOLLOW,
    FOLLOW,
    NOFOLLOW,
    OPEN,
    OPENAT2,
    PathArg,
    SyscallSpec,
)
from ocirun.util.linux import AT_EMPTY_PATH, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW

IN_DONT_FOLLOW = 0x02000000
FAN_MARK_DONT_FOLLOW = 0x04
MOVE_MOUNT_F_SYMLINKS = 0x01
MOVE_MOUNT_T_SYMLINKS = 0x10


def _p(arg, follow=FOLLOW, dirfd=None, flag_arg=None, mask=0, abs_only=False):
    return PathArg(arg=arg, dirfd=dirfd, follow=follow, flag_arg=flag_arg, flag_mask=mask, abs_only=abs_only)


def _s(name, *paths, kind="", exit=False, invalidate=(), sockaddr=None, bpf_allow=None, follow_open=False, only=""):
    return SyscallSpec(
        name=name, nr=-1, paths=tuple(paths), kind=kind, exit=exit,
        invalidate=tuple(invalidate), sockaddr=sockaddr, bpf_allow=bpf_allow, follow_open=follow_open, only=only,
    )


F, N = FOLLOW, NOFOLLOW
NOF = AT_SYMLINK_NOFOLLOW

SPECS: tuple[SyscallSpec, ...] = (
    # open family
    _s("open", _p(0, OPEN, flag_arg=1), follow_open=True),
    _s("creat", _p(0, F)),
    _s("openat", _p(1, OPEN, dirfd=0, flag_arg=2), follow_open=True),
    _s("openat2", _p(1, OPENAT2, dirfd=0, flag_arg=2), follow_open=True),
    _s("open_tree", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=2, mask=NOF)),
    # stat family
    _s("stat", _p(0, F)),
    _s("lstat", _p(0, N)),
    _s("newfstatat", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=3, mask=NOF), bpf_allow=("flag", 3, AT_EMPTY_PATH)),
    _s("statx", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=2, mask=NOF), bpf_allow=("flag", 2, AT_EMPTY_PATH)),
    _s("statfs", _p(0, F)),
    # i386's own: the old and the 64-bit stat structures, 16-bit ids, time64 (syscalls/i386.py)
    _s("oldstat", _p(0, F)),
    _s("oldlstat", _p(0, N)),
    _s("stat64", _p(0, F)),
    _s("lstat64", _p(0, N)),
    _s("fstatat64", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=3, mask=NOF), bpf_allow=("flag", 3, AT_EMPTY_PATH)),
    _s("statfs64", _p(0, F)),
    _s("truncate64", _p(0, F)),
    _s("chown16", _p(0, F)),
    _s("lchown16", _p(0, N)),
    _s("utimensat_time64", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=3, mask=NOF), bpf_allow=("null", 1)),
    _s("umount", _p(0, F), invalidate=(0,)),
    _s("access", _p(0, F)),
    _s("faccessat", _p(1, F, dirfd=0)),
    _s("faccessat2", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=3, mask=NOF)),
    _s("readlink", _p(0, N), kind="readlink"),
    _s("readlinkat", _p(1, N, dirfd=0), kind="readlink"),
    # cwd
    _s("getcwd", kind="getcwd"),
    _s("chdir", _p(0, F), kind="chdir"),
    _s("fchdir", kind="fchdir"),
    _s("chroot", _p(0, F)),
    _s("pivot_root", _p(0, F), _p(1, F)),
    # execution
    _s("execve", _p(0, F), kind="execve"),
    _s("execveat", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=4, mask=NOF), kind="execveat"),
    _s("uselib", _p(0, F)),
    _s("acct", _p(0, F)),
    # metadata
    _s("truncate", _p(0, F)),
    _s("chmod", _p(0, F)),
    _s("fchmodat", _p(1, F, dirfd=0)),
    _s("fchmodat2", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=3, mask=NOF)),
    _s("chown", _p(0, F)),
    _s("lchown", _p(0, N)),
    _s("fchownat", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=4, mask=NOF)),
    _s("utime", _p(0, F)),
    _s("utimes", _p(0, F)),
    _s("futimesat", _p(1, F, dirfd=0)),
    _s("utimensat", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=3, mask=NOF), bpf_allow=("null", 1)),
    _s("setxattr", _p(0, F)),
    _s("lsetxattr", _p(0, N)),
    _s("getxattr", _p(0, F)),
    _s("lgetxattr", _p(0, N)),
    _s("listxattr", _p(0, F)),
    _s("llistxattr", _p(0, N)),
    _s("removexattr", _p(0, F)),
    _s("lremovexattr", _p(0, N)),
    _s("setxattrat", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=2, mask=NOF)),
    _s("getxattrat", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=2, mask=NOF)),
    _s("listxattrat", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=2, mask=NOF)),
    _s("removexattrat", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=2, mask=NOF)),
    _s("file_getattr", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=4, mask=NOF)),
    _s("file_setattr", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=4, mask=NOF)),
    # namespace mutations (the path cache forgets what they change)
    # creating an entry where nothing was needs no invalidation (mkdir, mknod): a
    # missing name translates to the host path it will have; symlinks change what a
    # followed lookup of that name gives, so they do, and so does link(), whose new
    # name is a symlink when the old one is
    _s("mkdir", _p(0, N)),
    _s("mkdirat", _p(1, N, dirfd=0)),
    _s("rmdir", _p(0, N), kind="rmdir", invalidate=(0,)),
    _s("unlink", _p(0, N), invalidate=(0,), kind="remove"),
    _s("unlinkat", _p(1, N, dirfd=0), kind="rmdir", invalidate=(0,)),
    _s("rename", _p(0, N), _p(1, N), invalidate=(0, 1), kind="remove"),
    _s("renameat", _p(1, N, dirfd=0), _p(3, N, dirfd=2), invalidate=(0, 1), kind="remove"),
    _s("renameat2", _p(1, N, dirfd=0), _p(3, N, dirfd=2), invalidate=(0, 1), kind="remove"),
    _s("link", _p(0, N), _p(1, N), invalidate=(1,)),
    _s("linkat", _p(1, FLAG_FOLLOW, dirfd=0, flag_arg=4, mask=AT_SYMLINK_FOLLOW), _p(3, N, dirfd=2), invalidate=(1,)),
    # symlink's target (arg 0) is content, not a path to translate
    _s("symlink", _p(1, N), invalidate=(0,)),
    _s("symlinkat", _p(2, N, dirfd=1), invalidate=(0,)),
    _s("mknod", _p(0, N)),
    _s("mknodat", _p(1, N, dirfd=0)),
    # mounts and devices
    _s("mount", _p(0, F, abs_only=True), _p(1, F), invalidate=(1,)),
    _s("umount2", _p(0, F), invalidate=(0,)),
    _s("swapon", _p(0, F)),
    _s("swapoff", _p(0, F)),
    _s("quotactl", _p(1, F, abs_only=True)),
    _s("move_mount", _p(1, FLAG_FOLLOW, dirfd=0, flag_arg=4, mask=MOVE_MOUNT_F_SYMLINKS),
       _p(3, FLAG_FOLLOW, dirfd=2, flag_arg=4, mask=MOVE_MOUNT_T_SYMLINKS)),
    _s("fspick", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=2, mask=0x2)),  # FSPICK_SYMLINK_NOFOLLOW
    _s("mount_setattr", _p(1, FLAG_NOFOLLOW, dirfd=0, flag_arg=2, mask=NOF)),
    # notification, handles
    _s("inotify_add_watch", _p(1, FLAG_NOFOLLOW, flag_arg=2, mask=IN_DONT_FOLLOW)),
    _s("fanotify_mark", _p(4, FLAG_NOFOLLOW, dirfd=3, flag_arg=1, mask=FAN_MARK_DONT_FOLLOW)),
    # i386 passes the 64-bit mask in two registers: dirfd and path one later (replaces the above there)
    _s("fanotify_mark", _p(5, FLAG_NOFOLLOW, dirfd=4, flag_arg=1, mask=FAN_MARK_DONT_FOLLOW), only="i386"),
    _s("name_to_handle_at", _p(1, FLAG_FOLLOW, dirfd=0, flag_arg=4, mask=AT_SYMLINK_FOLLOW)),
    # AF_UNIX socket paths
    _s("bind", kind="sockaddr", sockaddr=(1, 2)),
    _s("connect", kind="sockaddr", sockaddr=(1, 2)),
    _s("sendto", kind="sockaddr", sockaddr=(4, 5)),
    _s("sendmsg", kind="sendmsg"),
    _s("getsockname", kind="sockname", exit=True, sockaddr=(1, 2)),
    _s("getpeername", kind="sockname", exit=True, sockaddr=(1, 2)),
    _s("accept", kind="accept", sockaddr=(1, 2)),
    _s("accept4", kind="accept", sockaddr=(1, 2)),
    # the sender's address of a datagram (plain recv() passes NULL: no stop)
    _s("recvfrom", kind="accept", sockaddr=(4, 5), bpf_allow=("null", 4)),
    # i386's multiplexer of the socket calls above: the core reads the sub-call's
    # arguments from memory and handles it as that call (ocirun/engine/multiplex.py)
    _s("socketcall", kind="socketcall"),
    # a 32-bit x86 program is told it runs on an i686, as PRoot does (configure scripts
    # in an i386 tree then build for it); x86_64's own uname is not trapped
    _s("uname", kind="uname32", exit=True, only="i386"),
    # PR_SET/GET_DUMPABLE are answered by the tracer (a non-dumpable tracee could not be
    # read); a nested `ocirun proot` announces its rootfs and bindings (ocirun/engine/nest.py)
    _s("prctl", kind="prctl"),
    # readdir of a rootfs directory holding a binding it lacks lists it (trapped only then)
    _s("getdents64", kind="getdents"),
)
