"""Path arguments of a trapped syscall: read from the tracee, resolved in its view,
replaced by the host path (pushed on the tracee's stack) when it differs, and the
path caches told about the guest's own mutations.

The SyscallSpec's PathArg says which argument is a path, which dirfd it is
relative to and whether its last component is followed (ocirun/engine/syscalls/).
"""

from __future__ import annotations

import errno
import os
import stat

from ocirun.engine import ptrace as pt
from ocirun.engine.extension import see_paths
from ocirun.engine.fastpath import mirror_cwd
from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.syscalls import (
    FLAG_FOLLOW,
    FLAG_NOFOLLOW,
    FOLLOW,
    O_NOFOLLOW,
    OPEN,
    OPENAT2,
    PathArg,
    SyscallSpec,
)
from ocirun.util.linux import AT_FDCWD, AT_REMOVEDIR, O_CREAT, O_EXCL

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.loop import Tracer
    from ocirun.engine.plan import Binding
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

ENC = "surrogateescape"
_UNLINKS = frozenset({"unlink", "unlinkat"})
_UNCLEAN = frozenset({"", ".", ".."})  # components the fast path does not derive through


def binding_components(tracer: Tracer, bindings: list[Binding]) -> set[str]:
    """Every name a binding's guest path (as given and canonical) is made of."""
    names: set[str] = set()
    for b in bindings:
        paths = [b.guest]
        try:
            paths.append(tracer.translator.canonical(b.guest, "/", b.deref_guest))
        except (GuestPathError, OSError):
            pass
        for p in paths:
            names.update(c for c in p.split("/") if c)
    return names


_COPIED = ("/cmdline", "/auxv")  # /proc files a loader-run program reads as a copy (ProcFiles.copy_file)


def _only_dots(guest: str) -> bool:
    """A relative path of '.' and '..' alone: resolved from the starting directory's own inode."""
    return all(c in ("", ".", "..") for c in guest.split("/"))


class PathArgs:
    def __init__(self, tracer: Tracer, bindings: list[Binding]):
        self.tracer = tracer
        self.root_view = tracer.root_view
        self.proc = tracer.proc
        # fast path (translate): names that a binding or its glue directories use
        self.bind_names = {".", ".."} | binding_components(tracer, bindings)
        # no extension sees the core's path syscalls (those that see their own need their paths)
        self.lean = not see_paths(tracer.extensions)
        self.fast = None  # the compiled fast path's module when it runs (ocirun/engine/fastpath.py)

    def follow(self, sc: Syscall, pa: PathArg) -> bool:
        """Whether the last component of this path argument is followed."""
        mode = pa.follow
        if mode == FOLLOW:
            return True
        if mode == FLAG_NOFOLLOW:
            return not (sc.args[pa.flag_arg] & pa.flag_mask)
        if mode == FLAG_FOLLOW:
            return bool(sc.args[pa.flag_arg] & pa.flag_mask)
        if mode == OPEN:
            flags = sc.args[pa.flag_arg]
            return not (flags & O_NOFOLLOW or (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
        if mode == OPENAT2:
            try:
                flags = sc.tracee.read_u64(sc.args[pa.flag_arg])
            except OSError:
                return True
            return not (flags & O_NOFOLLOW or (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
        return False

    def base_dir(self, t: Tracee, sc: Syscall, pa: PathArg) -> str | None:
        """Guest directory a relative path starts from (None: leave the call alone)."""
        return self.base_dirs(t, sc, pa)[0]

    def base_dirs(self, t: Tracee, sc: Syscall, pa: PathArg) -> tuple[str | None, str | None]:
        """(guest, host) directory a relative path starts from."""
        fd = AT_FDCWD if pa.dirfd is None else sc.arg_int(pa.dirfd)
        if fd == AT_FDCWD:
            guest = t.guest_cwd()
            return guest, t.fs.host_cwd
        host = t.fd_host_path(fd)
        if host is None or host[:1] != "/" or host.endswith(" (deleted)"):
            return None, None
        return t.view.to_guest(host), host

    def translate(self, t: Tracee, sc: Syscall, pa: PathArg) -> None:
        """Resolve one path argument; rewrite it when the kernel must see another path."""
        ptr = sc.args[pa.arg]
        if not ptr:
            return
        raw = pt.read_cstring(t.pid, ptr)
        if not raw:
            return  # "": ENOENT from the kernel, or AT_EMPTY_PATH on the dirfd
        guest = raw.decode("utf-8", ENC)
        follow = self.follow(sc, pa)
        if guest[0] != "/":
            if pa.abs_only:
                return
            if (not follow and self.lean and sc.nr not in t.abi.ext_nrs and t.view is self.root_view
                    and "/" not in guest
                    and guest not in self.bind_names and not sc.spec.invalidate
                    and sc.spec.kind != "readlink"):  # (a link in a binding may read as a guest path)
                return  # one plain name, not followed, no binding: the kernel finds the same entry
            self._translate_relative(t, sc, pa, guest, follow)
            return
        given = guest
        if guest[:6] == "/proc/":
            guest = self.proc.guest_path(t, guest, follow)
        mirror = self.fast is not None and given[:6] != "/proc/" and t.view is self.root_view
        host = self._to_host(t, guest, "/", follow, mirror)
        if host[:6] == "/proc/" and host.endswith(_COPIED) and sc.spec.follow_open:
            host = self.proc.copy_file(t, host)
        sc.guest_paths[pa.arg] = guest
        sc.host_paths[pa.arg] = host
        if host != given:  # (/proc/self/exe -> the program: rewritten even when that is a host path)
            sc.set_arg(pa.arg, sc.push_string(host))
        if mirror:
            self.mirror(t, guest, host, follow)

    def _translate_relative(self, t: Tracee, sc: Syscall, pa: PathArg, guest: str, follow: bool) -> None:
        base, base_host = self.base_dirs(t, sc, pa)
        if base is None:
            return  # relative to an fd the guest cannot name: the kernel resolves it
        mirror = self.fast is not None and t.view is self.root_view
        if mirror:
            self._mirror_base(t, sc, pa, base, base_host)
        try:
            host = self._to_host(t, guest, base, follow, mirror)
        except GuestPathError as exc:
            if exc.errno == errno.ENOENT and _only_dots(guest) and base_host and not os.path.lexists(base_host):
                return  # "." or ".." from a removed directory: the kernel still knows where it was
            raise
        if host[:6] == "/proc/" and host.endswith(_COPIED) and sc.spec.follow_open:
            host = self.proc.copy_file(t, host)
        sc.guest_paths[pa.arg] = guest
        sc.host_paths[pa.arg] = host
        # the same string the kernel would build from the dirfd: no symlink, '..' or
        # binding on the way, so the untouched relative call resolves identically
        if base_host is None or host != (base_host + "/" + guest if base_host != "/" else "/" + guest):
            sc.set_arg(pa.arg, sc.push_string(host))
        if mirror:
            self.mirror(t, "/" + guest if base == "/" else base + "/" + guest, host, follow)

    def _to_host(self, t: Tracee, guest: str, base: str, follow: bool, mirror: bool) -> str:
        """The translator's answer; on an error, the fast path may still learn the parent
        directory (the next missing name in it fails there, as the kernel fails it)."""
        try:
            return t.view.translator.to_host(guest, base, follow, t.tgid, t.pid)
        except GuestPathError:
            if mirror:
                self._mirror_parent(t, guest if guest[:1] == "/" else ("" if base == "/" else base) + "/" + guest)
            raise

    def mirror(self, t: Tracee, guest: str, host: str, follow: bool) -> None:
        """Give the fast path what the result cache holds (never /proc: per process)."""
        if host[:6] != "/proc/" and t.view.translator.cached(guest, follow) == host:
            self.fast.push(guest.encode("utf-8", ENC), host.encode("utf-8", ENC), follow)
        self._mirror_parent(t, guest)

    def _mirror_parent(self, t: Tracee, guest: str) -> None:
        """The followed translation of the parent directory of absolute `guest`, from which
        the fast path derives those of the other names in it (_fastpath.c: derive)."""
        tr = t.view.translator
        parent = guest.rpartition("/")[0] or "/"
        if (parent == guest or parent[:6] == "/proc/" or parent == "/proc" or tr.cached(parent, True) is not None
                or any(c in _UNCLEAN for c in guest[1:].split("/"))):
            return
        try:
            phost = tr.to_host(parent, "/", True)
        except (GuestPathError, OSError):
            return
        if phost[:6] != "/proc/" and tr.cached(parent, True) == phost:
            self.fast.push(parent.encode("utf-8", ENC), phost.encode("utf-8", ENC), True)

    def _mirror_base(self, t: Tracee, sc: Syscall, pa: PathArg, base: str, base_host: str | None) -> None:
        """What the fast path needs to make a relative path absolute: the cwd of an
        unshared FsState as cached, or the to_guest of the dirfd's directory."""
        if pa.dirfd is None or sc.arg_int(pa.dirfd) == AT_FDCWD:
            mirror_cwd(self.fast, t)
        elif base_host is not None and not self._socket_alias(base_host):
            self.fast.push_dir(base_host.encode("utf-8", ENC), base.encode("utf-8", ENC))

    def _socket_alias(self, host: str) -> bool:
        """View.to_guest maps the scratch directory's socket aliases: not a pure function there."""
        scratch = self.tracer.sockets.scratch.path
        return scratch is not None and host.startswith(scratch)

    def enter_rmdir(self, t: Tracee, sc: Syscall) -> None:
        """rmdir of a path ending in '..' is ENOTEMPTY on Linux (the kernel would get the
        resolved directory with '/.' and say EINVAL)."""
        if sc.name == "unlinkat" and not sc.args[2] & AT_REMOVEDIR:
            self.enter_remove(t, sc)
            return
        guest = sc.guest_paths.get(sc.spec.paths[0].arg)
        if guest is not None and guest.rstrip("/").rpartition("/")[2] == "..":
            sc.skip(-errno.ENOTEMPTY)
            return
        self.enter_remove(t, sc)

    def enter_remove(self, t: Tracee, sc: Syscall) -> None:
        """rmdir, unlink or rename of the guest root or of a binding's guest path fails
        EBUSY, as a mount point does in the kernel (PRoot acts on the host: rename("/", x)
        moves the whole rootfs away)."""
        for pa in sc.spec.paths:
            host, guest = sc.host_paths.get(pa.arg), sc.guest_paths.get(pa.arg)
            if host is None or guest is None or guest[-1:] == "/" and not os.path.isdir(host):
                continue  # (a file named with a trailing slash: ENOTDIR from the kernel first)
            base = "/" if guest[:1] == "/" else self.base_dir(t, sc, pa)
            if base is not None and t.view.translator.is_mount_point(host, guest, base):
                sc.skip(-self._mount_point_errno(t, guest, base))
                return

    def _mount_point_errno(self, t: Tracee, guest: str, base: str) -> int:
        """EBUSY, after the check the kernel makes first (may_delete: write and search on the
        parent directory); the root itself ("/") is EBUSY before any check."""
        if (guest[:1] == "/" and not guest.strip("/")) or self.tracer.guest_euid(t) == 0:
            return errno.EBUSY
        tr = t.view.translator
        try:
            parent = tr.canonical(guest, base, False, t.tgid, t.pid).rpartition("/")[0] or "/"
            parent_host = tr.to_host(parent, "/", True, t.tgid, t.pid)
        except GuestPathError:
            return errno.EBUSY
        return errno.EBUSY if os.access(parent_host, os.W_OK | os.X_OK) else errno.EACCES

    # ---------------------------------------------------------- invalidation
    def invalidate(self, sc: Syscall, spec: SyscallSpec) -> None:
        """The guest changes the paths spec.invalidate names: every view's cache forgets them."""
        if spec.name in _UNLINKS and not sc.at_exit and self._unlinks_plain_file(sc, spec):
            self._invalidate_paths(sc, spec)  # at entry only: no exit stop for rm of files
            return
        self._invalidate_paths(sc, spec)
        if not sc.at_exit and len(self.tracer.tracees) > 1:
            sc.exit_wanted = True  # another tracee could re-cache the old state meanwhile

    def _invalidate_paths(self, sc: Syscall, spec: SyscallSpec) -> None:
        for idx in spec.invalidate:
            pa = spec.paths[idx]
            host = sc.host_paths.get(pa.arg)
            if host:
                for view in self.tracer.views:
                    view.translator.invalidate(host)

    @staticmethod
    def _unlinks_plain_file(sc: Syscall, spec: SyscallSpec) -> bool:
        """unlink of a regular file: invalidating at the entry is enough (a lookup
        racing the unlink may re-cache a file entry, which resolves to the same
        host path as none), so no exit stop."""
        if spec.name == "unlinkat" and sc.args[2] & AT_REMOVEDIR:
            return False
        host = sc.host_paths.get(spec.paths[0].arg)
        if not host:
            return False
        try:
            mode = os.lstat(host).st_mode
        except OSError:
            return True  # nothing there: the unlink fails, nothing changes
        return not (stat.S_ISLNK(mode) or stat.S_ISDIR(mode))
