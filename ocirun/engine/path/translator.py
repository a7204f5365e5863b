"""Guest path -> host path, resolved the way the kernel would, but inside the guest.

`PathTranslator` is called by the tracer at every path syscall, so it is the hot
path of every path-heavy workload. It walks a guest path component by component
exactly like the kernel's lookup (symlinks, `..`, trailing slashes, ELOOP,
ENOTDIR), with every symlink - absolute or relative, in the rootfs or in a bound
host directory - resolved in the GUEST namespace, and `..` never above the guest
root.

Errors vs. host paths (the choice this module makes):
- A failure the kernel would report during the walk (a missing or non-directory
  intermediate component, ELOOP, ENAMETOOLONG, EACCES from a host lstat, an empty
  path) raises `GuestPathError(errno)`; the engine skips the syscall with -errno.
  Raising keeps the errno right even where bindings or glue make the host layout
  differ from the guest's.
- The LAST component is never an error by itself: a missing final entry (creat,
  mkdir, bind, symlink targets) yields the host path where it would be, and a
  trailing `/` is kept (`host + "/"`) so the kernel applies its own
  trailing-slash rules per syscall (mkdir "new/" works, open("file/") fails
  ENOTDIR, open("new/", O_CREAT) fails EISDIR). A trailing `.` or `..` yields
  `host + "/."`, so rmdir/rename/unlink of such a path fail as in the kernel
  (rmdir("d/..") reports EINVAL where Linux says ENOTEMPTY) instead of acting on
  the resolved directory.
- A trailing slash forces the last symlink to be followed even with
  follow_last=False (as lstat("link/") does).

Cache (OCIRUN_PATH_CACHE=0 or cache=False turns it off): its policy, and what it
does not see, are in ocirun/engine/path/cache.py.

/proc (ocirun/engine/path/proc.py): /proc/self and /proc/thread-self name the
tracee, magic links are followed in the guest when something comes after them
and handed to the kernel as they are when last; /proc/PID/root is the guest root.

Bindings onto guest paths the rootfs lacks: the missing parent directories are
backed by a private "glue" tree (like PRoot's) whose directories hold an empty
entry per bound child, so stat/opendir/readdir of the parents work. A binding
onto a missing leaf inside an EXISTING rootfs directory resolves, but readdir
of that directory does not list it by itself (the rootfs is never written to):
the engine appends bound_children(dir) at the end of the getdents64 result.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from ocirun.engine.path import openat2
from ocirun.engine.path.bindings import BindingMap, normpath
from ocirun.engine.path.cache import CACHE_MAX, PathCache
from ocirun.engine.path.errors import GuestPathError, check_length
from ocirun.engine.path.fsview import DIR, LINK, MISSING, FsView, HostFs
from ocirun.engine.path.glue import GlueTree
from ocirun.engine.path.openat2 import RESOLVE_BENEATH, RESOLVE_NO_XDEV
from ocirun.engine.path.proc import is_proc_magic_link, proc_link
from ocirun.engine.path.walk import TAIL_SLASH, host_with_tail, push_target, tail_kind
from ocirun.engine.plan import Binding
from ocirun.util.records import dataclass

MAXSYMLINKS = 40  # Linux: the 41st symlink in one lookup is ELOOP

def cache_enabled_by_env() -> bool:
    """OCIRUN_PATH_CACHE=0 (or 'no', 'false', 'off') disables the resolution cache."""
    return os.environ.get("OCIRUN_PATH_CACHE", "1").strip().lower() not in ("0", "no", "false", "off")


@dataclass(frozen=True, slots=True)
class Resolved:
    """One resolution: canonical guest path (for chdir/getcwd) and the host path for the kernel."""

    guest: str
    host: str


class PathTranslator:
    """Translate guest paths to host paths (and back) for one guest root + bindings.

    rootfs: host path of the guest root (realpath'd). bindings: `-b` list; host
    paths are realpath'd, bindings whose host path is missing are skipped and
    listed in `self.skipped` (PRoot warns and ignores them). Guest paths of
    bindings are canonicalised inside the guest (symlink dereferenced unless
    deref_guest is False), shallow bindings first so nested ones see them.
    Guest directories that a binding needs but the rootfs lacks ("/opt" for
    `-b X:/opt/foo`) appear as directories backed by a glue tree created lazily
    under `glue_dir` (default: a private temp dir removed with the translator).
    """

    def __init__(
        self,
        rootfs: str,
        bindings: list[Binding] | None = None,
        fs: FsView | None = None,
        *,
        cache: bool | None = None,
        glue_dir: str | None = None,
    ):
        self.fs: FsView = fs if fs is not None else HostFs()
        self.rootfs = normpath(os.path.realpath(rootfs))
        self.cache_enabled = cache_enabled_by_env() if cache is None else bool(cache)
        self.skipped: list[Binding] = []
        self._glue_parent = glue_dir
        self._gluetree = GlueTree(glue_dir)
        # guest canonical path -> host ('' stands for the host root '/')
        self._bind_exact: dict[str, str] = {}
        self._binding_of: dict[str, Binding] = {}
        self._virtual: set[str] = set()
        self._glue_children: dict[str, set[str]] = {}
        self._cache = PathCache()
        self._entries = self._cache.entries
        self._full_follow = self._cache.full_follow
        self._full_nofollow = self._cache.full_nofollow
        self.on_invalidate: Callable[[], None] | None = None  # the fast path's mirror (fastpath.py)
        self._last_stacks: tuple[list[str], list[str]] = ([""], [""])
        self._map = BindingMap([(self.rootfs, "/")])
        self._setup_bindings(list(bindings or ()))
        self._map = BindingMap(
            [(self.rootfs, "/")]
            + [(h or "/", g or "/") for g, h in self._bind_exact.items()]
        )

    # ----------------------------------------------------------------- setup

    def _setup_bindings(self, bindings: list[Binding]) -> None:
        """Realpath hosts, canonicalise guests in the guest (shallowest first), collect glue dirs."""
        items: list[tuple[Binding, str, str]] = []
        for b in bindings:
            host = os.path.realpath(os.path.expanduser(b.host))
            if not os.path.lexists(host):
                self.skipped.append(b)
                continue
            guest = normpath(b.guest if b.guest.startswith("/") else "/" + b.guest)
            items.append((b, host, guest))
        items.sort(key=lambda it: 0 if it[2] == "/" else it[2].count("/"))
        self._root_host = "" if self.rootfs == "/" else self.rootfs
        for b, host, guest in items:
            if guest == "/":
                self.rootfs = host
                self._root_host = "" if host == "/" else host
                self._binding_of["/"] = b
                continue
            try:
                canon = self._walk(guest, b.deref_guest, lenient=True)[0]
            except GuestPathError:  # ELOOP or EACCES on the guest side: PRoot ignores it too
                self.skipped.append(b)
                continue
            if canon == "/":  # a guest symlink leading to the root: bind onto the root
                self.rootfs = host
                self._root_host = "" if host == "/" else host
                self._binding_of["/"] = b
                continue
            self._bind_exact[canon] = "" if host == "/" else host
            self._binding_of[canon] = b
            parent, _, name = canon.rpartition("/")
            while parent:
                self._virtual.add(parent)
                self._glue_children.setdefault(parent, set()).add(name)
                parent, _, name = parent.rpartition("/")
            self._glue_children.setdefault("", set()).add(name)  # for bound_children("/")
        # a bound path that is itself an ancestor of another binding is a real dir, not glue
        self._virtual.difference_update(self._bind_exact)
        self._gluetree.glued.clear()  # glue made while canonicalising may lack entries added later

    def _glue(self, guest: str) -> str:
        """Host directory standing for the virtual guest dir `guest` (ocirun/engine/path/glue.py)."""
        return self._gluetree.dir(guest, self._glue_children, self._virtual, self._bind_exact)

    def bound_paths(self) -> tuple[dict[str, str], list[str]]:
        """The rootfs's and the bindings' host paths with their to_guest (no glue, no
        socket alias is one), and every guest path of them."""
        return self._map.paths()

    @property
    def glue_root(self) -> str | None:
        """Host directory of the glue tree (None until a virtual directory was needed)."""
        return self._gluetree.root

    def close(self) -> None:
        """Remove the glue tree, if one was created."""
        self._gluetree.close()

    # ------------------------------------------------------------ resolution

    def _walk(self, path: str, follow_last: bool, lenient: bool = False, pid: int | None = None,
              tid: int | None = None, rflags: int = 0, base: tuple[list[str], list[str]] | None = None,
              floor: int = 1) -> tuple[str, str, bool]:
        """Resolve absolute guest `path` like the kernel's lookup, in the guest namespace.

        Returns (canonical guest path, host path for the kernel, volatile: went
        through the host's /proc, not to be cached). lenient (binding setup): missing
        or non-directory intermediates are taken as directories, nothing cached.
        rflags: openat2's RESOLVE_*; base: (guest, host) stacks `path` starts from
        (their end left in self._last_stacks), floor: the depth '..' and absolute
        names cannot go above (1 = the guest root).
        """
        use_cache = self.cache_enabled and not lenient and not rflags
        entries = self._entries
        tail = tail_kind(path)
        todo = [s for s in reversed(path.split("/")) if s and s != "."]
        out = tail  # the suffix the host path keeps ('/' or '/.')
        gs, hs = ([""], [self._root_host]) if base is None else (list(base[0]), list(base[1]))
        links, volatile = 0, False
        while todo:
            name = todo.pop()
            if name == "..":
                self._dotdot(gs, hs, floor, rflags, path)
                continue
            g = gs[-1] + "/" + name
            ent = entries.get(g) if use_cache else None
            proc = False
            if ent is None:
                h, kind, target, proc = self._lookup(g, hs[-1] + "/" + name, use_cache)
                volatile = volatile or proc
            else:
                h, kind, target = ent
            last = not todo
            if kind == LINK and (follow_last or tail or not last):
                if rflags:
                    openat2.check_link_flags(rflags, h, target, path)
                if proc:
                    target = self._proc_target(g, h, target, last, gs, hs, pid, tid)
                    if target is None:
                        continue
                links += 1
                if links > MAXSYMLINKS:
                    raise GuestPathError(errno.ELOOP, path)
                if not target:
                    raise GuestPathError(errno.ENOENT, g)
                if last and tail_kind(target) > tail:
                    tail = tail_kind(target)  # "target/" or "target/.." needs a directory
                    out = out or TAIL_SLASH
                if target[0] == "/":
                    target = self.bound_link_target(g, h, target)
                push_target(target, gs, hs, todo, floor)
                continue
            if rflags & RESOLVE_NO_XDEV and (g in self._bind_exact or g in self._virtual):
                raise GuestPathError(errno.EXDEV, path)
            if kind != DIR and (tail or not last) and not lenient and not (last and tail == TAIL_SLASH):
                raise GuestPathError(errno.ENOENT if kind == MISSING else errno.ENOTDIR, g)
            gs.append(g)
            hs.append(h)
        if base is not None:
            self._last_stacks = (gs, hs)
        return gs[-1] or "/", host_with_tail(hs[-1] or "/", out, len(gs) > 1), volatile

    def _proc_target(self, g: str, h: str, target: str | None, last: bool, gs: list[str], hs: list[str],
                     pid: int | None, tid: int | None) -> str | None:
        """The guest target of a link under the host's /proc, or None when the link is
        taken as it is (pushed on the stacks): a magic link the kernel follows itself, to
        the very object (an open fd, the exe, the cwd), when last or unmappable (module doc)."""
        mapped = proc_link(self, h, target, pid, tid)
        if mapped is None or (last and not h.endswith("/root") and is_proc_magic_link(h)):
            gs.append(mapped if mapped is not None else g)
            hs.append(h)
            return None
        return mapped

    def _dotdot(self, gs: list[str], hs: list[str], floor: int, rflags: int, path: str) -> None:
        """'..': one level up, never above the floor (the guest root)."""
        if len(gs) > floor:
            if rflags & RESOLVE_NO_XDEV and (gs[-1] in self._bind_exact or gs[-1] in self._virtual):
                raise GuestPathError(errno.EXDEV, path)
            gs.pop()
            hs.pop()
        elif rflags & RESOLVE_BENEATH:
            raise GuestPathError(errno.EXDEV, path)

    def _lookup(self, g: str, h: str, use_cache: bool) -> tuple[str, int, str | None, bool]:
        """An uncached component: (host path, kind, symlink target, under the host's /proc).
        h: the host path below the parent, unless a binding or glue stands there."""
        bound = self._bind_exact.get(g)
        if bound is not None:
            h = bound
        try:
            kind = self.fs.lstat_kind(h or "/")
            target = self.fs.readlink(h or "/") if kind == LINK else None
        except OSError as exc:
            raise GuestPathError.from_oserror(exc, g) from None
        if kind != DIR and kind != LINK and g in self._virtual:
            kind = DIR
            h = self._glue(g)
        if h.startswith("/proc/"):  # per-process and ever-changing: never cached
            return h, kind, target, True
        if use_cache and kind != MISSING:
            self._cache.store(g, h, kind, target)
        return h, kind, target, False

    def _leaf(self, path: str, follow_last: bool) -> tuple[str, str] | None:
        """Warm shortcut: a plain path whose parent directory is cached costs one lstat at most.

        Applies to normalised absolute paths (no '//', '.', '..', trailing '/')
        whose parent is a cached directory entry: by the cache's invariant the
        parent then is canonical, so only the leaf is left to look at. Anything
        else (a symlink to follow, glue, /proc, an error) returns None and takes
        the full walk.
        """
        if path[-1] == "/" or "//" in path or "/./" in path or "/../" in path:
            return None
        parent, _, name = path.rpartition("/")
        if name == "." or name == "..":
            return None
        entries = self._entries
        if parent:
            pent = entries.get(parent)
            if pent is None or pent[1] != DIR:
                return None
            phost = pent[0]
        else:
            phost = self._root_host
        ent = entries.get(path)
        if ent is None:
            h = self._bind_exact.get(path)
            if h is None:
                h = phost + "/" + name
            if h.startswith("/proc/") or path in self._virtual:
                return None
            try:
                kind = self.fs.lstat_kind(h or "/")
            except OSError:
                return None  # the walk reports it with the guest path
            if kind == LINK:
                return None  # the walk reads it (and caches it)
            if kind != MISSING:
                self._cache.store(path, h, kind, None)
        else:
            h, kind, _ = ent
            if kind == LINK and follow_last:
                return None
        if len(self._full_follow) >= CACHE_MAX:
            self._full_follow.clear()
        if len(self._full_nofollow) >= CACHE_MAX:
            self._full_nofollow.clear()
        return path, h or "/"

    def _resolve(self, guest_path: str, cwd: str, follow_last: bool, pid: int | None, tid: int | None) -> tuple[str, str]:
        if not guest_path:
            raise GuestPathError(errno.ENOENT, guest_path)
        if guest_path[0] == "/":
            key = guest_path
        elif cwd == "/":
            key = "/" + guest_path
        else:
            key = cwd + "/" + guest_path
        full = None
        if self.cache_enabled:
            full = self._full_follow if follow_last else self._full_nofollow
            hit = full.get(key)
            if hit is not None:
                return hit
        check_length(guest_path)
        res = self._leaf(key, follow_last) if full is not None else None
        if res is not None:
            full[key] = res  # full is not None whenever _leaf answered
            return res
        guest, host, volatile = self._walk(key, follow_last, False, pid, tid)
        res = (guest, host)
        if full is not None and not volatile:
            if len(full) >= CACHE_MAX:
                full.clear()
            full[key] = res
        return res

    def to_host(self, guest_path: str, cwd: str = "/", follow_last: bool = True, pid: int | None = None,
                tid: int | None = None) -> str:
        """Host path for the kernel, for a guest path as a syscall received it.

        cwd: the guest's CANONICAL working directory (as canonical() returned it;
        relative paths start there; for *at syscalls pass the dirfd's guest path).
        follow_last=False wherever the kernel does not follow the last symlink:
        lstat, readlink, unlink, rmdir, rename (both), link (new; old unless
        AT_SYMLINK_FOLLOW), symlink/mkdir/mknod targets, O_NOFOLLOW, O_CREAT|O_EXCL,
        AT_SYMLINK_NOFOLLOW, lchown, l*xattr, AF_UNIX bind. pid/tid: the tracee's
        thread group id and thread id, used for /proc/self and /proc/thread-self
        (without them the tracer's own pid would show). An empty path is ENOENT:
        AT_EMPTY_PATH is the caller's business.
        Raises GuestPathError for a path the kernel could not resolve (module doc).
        """
        if self.cache_enabled and guest_path[:1] == "/":  # fast path: absolute, warm
            hit = (self._full_follow if follow_last else self._full_nofollow).get(guest_path)
            if hit is not None:
                return hit[1]
        return self._resolve(guest_path, cwd, follow_last, pid, tid)[1]

    def to_host_openat2(self, guest_path: str, cwd: str = "/", follow_last: bool = True, resolve: int = 0,
                        pid: int | None = None, tid: int | None = None) -> str:
        """to_host with openat2's open_how.resolve flags, applied in the GUEST namespace
        (ocirun/engine/path/openat2.py); cwd is the dirfd's canonical guest path."""
        return openat2.to_host(self, guest_path, cwd, follow_last, resolve, pid, tid)

    def resolve(self, guest_path: str, cwd: str = "/", follow_last: bool = True, pid: int | None = None,
                tid: int | None = None) -> Resolved:
        """Canonical guest path and host path of `guest_path` (arguments as to_host)."""
        guest, host = self._resolve(guest_path, cwd, follow_last, pid, tid)
        return Resolved(guest, host)

    def canonical(self, guest_path: str, cwd: str = "/", follow_last: bool = True, pid: int | None = None,
                  tid: int | None = None) -> str:
        """Canonical guest path (what chdir stores and getcwd shows)."""
        return self._resolve(guest_path, cwd, follow_last, pid, tid)[0]

    # --------------------------------------------------------------- reverse

    def to_guest(self, host_path: str) -> str | None:
        """Guest path showing `host_path` (getcwd, /proc/PID/{cwd,exe,fd/N}, socket names).

        Longest binding by host path first (ties: the shortest guest path), then
        the rootfs prefix. None when the guest cannot see that host path at all;
        the engine then shows it unchanged, as PRoot does. Purely lexical: a host
        path that is shadowed in the guest by another binding still maps to the
        guest path it would have.
        """
        if host_path[:1] != "/":
            return None
        if "//" in host_path or "/." in host_path or (host_path.endswith("/") and host_path != "/"):
            host_path = normpath(host_path)
        glue = self._gluetree.root
        if glue is not None and (host_path == glue or host_path.startswith(glue + "/")):
            return host_path[len(glue) :] or "/"
        return self._map.host_to_guest(host_path)

    def bound_link_target(self, guest_link: str, host_link: str, target: str) -> str:
        """PRoot's rule for an absolute symlink inside a binding (see BindingMap.link_target)."""
        return self._map.link_target(self.rootfs, guest_link, host_link, target)

    def readlink_guest(self, host_link_path: str) -> str:
        """What readlink() must show the guest for the host symlink `host_link_path`.

        Guest symlinks are returned byte for byte (absolute targets are already
        guest paths). The kernel's magic links under /proc/PID (exe, cwd, root,
        fd/N, map_files/X) hold host paths: those are translated with to_guest,
        keeping a " (deleted)" suffix; anon/pipe/socket targets and host paths the
        guest cannot see are returned unchanged.
        """
        target = self.fs.readlink(host_link_path)
        if target[:1] == "/" and is_proc_magic_link(host_link_path):
            suffix = ""
            if target.endswith(" (deleted)"):
                target, suffix = target[: -len(" (deleted)")], " (deleted)"
            guest = self.to_guest(target)
            if guest is not None:
                return guest + suffix
            return target + suffix
        return target

    def bound_children(self, guest_dir: str) -> list[str]:
        """Names in canonical `guest_dir` that bindings need to exist (the binding
        itself or a directory on the way to one).

        For an engine that wants readdir of a real rootfs directory to list a
        binding whose mount point the rootfs lacks: add the names the real
        listing does not have (getdents fix-up). Glue directories list theirs.
        """
        return sorted(self._glue_children.get("" if guest_dir == "/" else guest_dir, ()))

    def is_mount_point(self, host_path: str, guest_path: str, cwd: str = "/") -> bool:
        """Whether an unfollowed guest path names the guest root or a binding's guest path:
        what the kernel refuses to remove or move (EBUSY) as a mount point. The host
        path (as translated) is checked first, so other paths cost one set look-up."""
        host = host_path.rstrip("/")
        if host != self._root_host and host not in self._bind_exact.values():
            return False
        try:
            guest = self.canonical(guest_path, cwd, False)
        except GuestPathError:
            return False
        return guest == "/" or guest in self._bind_exact

    def binding_for(self, guest_canonical: str) -> Binding | None:
        """The Binding covering a canonical guest path (longest match), e.g. for readonly/EROFS."""
        key = self._map.binding_for_guest(guest_canonical)
        return None if key is None else self._binding_of.get(key)

    def chrooted(self, guest_dir: str, cwd: str = "/") -> PathTranslator:
        """A translator for a guest that called chroot(guest_dir): that dir becomes '/'.

        Bindings below guest_dir are kept at their place relative to it; the
        others are no longer visible (as with a real chroot). Raises
        GuestPathError (ENOENT/ENOTDIR...) when guest_dir is not a directory.
        """
        guest, host = self._resolve(guest_dir, cwd, True, None, None)
        host = host[:-2] if host.endswith("/.") else host.rstrip("/") or "/"
        kind = self.fs.lstat_kind(host)
        if kind != DIR:
            raise GuestPathError(errno.ENOENT if kind == MISSING else errno.ENOTDIR, guest_dir)
        prefix = "" if guest == "/" else guest
        bindings = []
        for g, h in self._bind_exact.items():
            if g.startswith(prefix + "/"):
                b = self._binding_of[g]
                bindings.append(Binding(h or "/", g[len(prefix) :], deref_guest=False, readonly=b.readonly))
        return PathTranslator(
            host, bindings, self.fs, cache=self.cache_enabled, glue_dir=self._glue_parent
        )

    # ---------------------------------------------------------- invalidation

    def invalidate(self, host_path: str) -> None:
        """Forget everything cached at or under `host_path` (after a guest mutation there).

        Accepts the host path as to_host returned it (a trailing '/' or '/.' is ignored).
        """
        self._cache.invalidate(host_path)
        if self.on_invalidate is not None:
            self.on_invalidate()

    def invalidate_many(self, host_paths: list[str]) -> None:
        """invalidate() of each of these host paths, normalised (no '//', '.', trailing '/')."""
        self._cache.invalidate_many(host_paths)
        if self.on_invalidate is not None:
            self.on_invalidate()

    def invalidate_all(self) -> None:
        """Forget every cached resolution (e.g. after a binding change or an unknown mutation)."""
        self._cache.clear()
        if self.on_invalidate is not None:
            self.on_invalidate()

    def cached(self, guest_path: str, follow_last: bool) -> str | None:
        """The host path the result cache holds for an absolute guest path, if any."""
        hit = (self._full_follow if follow_last else self._full_nofollow).get(guest_path)
        return None if hit is None else hit[1]
