"""Pure path logic of the engine: guest<->host translation, bindings, resolution cache.

No ptrace in here: the tracer calls these at each path syscall. Paths are str;
decode tracee bytes with os.fsdecode (surrogateescape) and encode results with
os.fsencode, so any byte sequence round-trips exactly.

How the engine uses it:
    tr = PathTranslator(plan.rootfs, plan.bindings)        # tr.skipped: missing hosts
    host = tr.to_host(path, cwd=guest_cwd_or_dirfd_path, follow_last=not NOFOLLOW,
                      pid=tgid, tid=tid)                  # GuestPathError -> -errno
    guest_cwd = tr.canonical(path, cwd)                    # chdir: store the canonical path
    tr.invalidate(host)                                    # after a successful rename (both),
                                                           # unlink, rmdir, symlink, link (new),
                                                           # mkdir, mknod, mount
    tr.to_guest(host) or host                              # getcwd, /proc results, sun_path
    tr.readlink_guest(host_link)                           # readlink results (incl. /proc magic)
    tr.binding_for(guest).readonly                         # EROFS for `-v a:b:ro`
    tr.to_host_openat2(path, dirfd_guest, follow, how.resolve, pid=, tid=)
                                                           # then openat2 with resolve=0
    tr.chrooted(guest_dir, cwd)                            # a translator for chroot(2)
    tr.close()                                             # removes the glue tree

The error/best-effort policy and the cache policy are in translator.py's docstring.
"""

from ocirun.engine.path.bindings import (
    R_BINDINGS,
    S_BINDINGS,
    BindingMap,
    parse_bind_spec,
    recommended_bindings,
)
from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.path.fsview import DIR, FILE, LINK, MISSING, FsView, HostFs
from ocirun.engine.path.translator import PathTranslator, Resolved

__all__ = [
    "BindingMap",
    "DIR",
    "FILE",
    "FsView",
    "GuestPathError",
    "HostFs",
    "LINK",
    "MISSING",
    "PathTranslator",
    "R_BINDINGS",
    "Resolved",
    "S_BINDINGS",
    "parse_bind_spec",
    "recommended_bindings",
]
