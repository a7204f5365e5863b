"""PRoot's `-b`/`-m` specs, the `-R`/`-S` binding sets, and longest-match lookups.

A binding makes host path H visible at guest path G. Lookups match on path
component boundaries (`/usr` does not match `/usrx`) and the longest match wins,
in both directions.
"""

from __future__ import annotations

import os

from ocirun.engine.plan import Binding

# PRoot's manual, `-R PATH`: "*path*" stands for the rootfs itself (bound at its own host path).
R_BINDINGS: tuple[str, ...] = (
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/hosts.equiv",
    "/etc/mtab",
    "/etc/netgroup",
    "/etc/networks",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/etc/localtime",
    "/dev/",
    "/sys/",
    "/proc/",
    "/tmp/",
    "/run/",
    "/var/run/dbus/system_bus_socket",
    "*path*",
)

# PRoot's manual, `-S PATH` (which also implies -0): the minimal set, no host user database.
S_BINDINGS: tuple[str, ...] = (
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/dev/",
    "/sys/",
    "/proc/",
    "/tmp/",
    "/run/shm",
    "*path*",
)


def normpath(path: str) -> str:
    """Lexical normalisation of an absolute path: no '//', '.', trailing '/' ('..' resolved lexically)."""
    path = os.path.normpath(path)
    if path.startswith("//"):  # POSIX keeps a leading '//' : Linux does not care
        path = "/" + path.lstrip("/")
    return path


def parse_bind_spec(spec: str, cwd: str | None = None, readonly: bool = False) -> Binding:
    """Parse `host`, `host:guest` or `host:guest!` (PRoot's -b/-m) into a Binding.

    The host path gets `~` expanded and is made absolute against `cwd` (default:
    the process cwd); it is not resolved here (the translator realpaths it on the
    host). Without a guest part the guest path is the host path as given. A guest
    ending in `!` is not dereferenced if it is a symlink in the guest.
    Raises ValueError naming the problem for a bad spec.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError("empty binding spec (expected HOST or HOST:GUEST)")
    if "\0" in spec:
        raise ValueError(f"binding spec {spec!r} contains a NUL byte")
    host, sep, guest = spec.partition(":")
    if not host:
        raise ValueError(f"binding spec {spec!r} has an empty host path (expected HOST[:GUEST])")
    host = os.path.expanduser(host)
    if not os.path.isabs(host):
        host = os.path.join(cwd if cwd is not None else os.getcwd(), host)
    host = normpath(host)
    deref = True
    if sep:
        if guest.endswith("!"):
            deref = False
            guest = guest[:-1]
        if not guest:
            raise ValueError(f"binding spec {spec!r} has an empty guest path (expected HOST:GUEST)")
        if guest.startswith("~"):
            raise ValueError(f"binding spec {spec!r}: guest path {guest!r} must be absolute")
        if not guest.startswith("/"):
            raise ValueError(f"binding spec {spec!r}: guest path {guest!r} must be absolute")
        guest = normpath(guest)
    else:
        guest = host
    return Binding(host=host, guest=guest, deref_guest=deref, readonly=readonly)


def recommended_bindings(rootfs: str, kind: str = "R") -> list[Binding]:
    """The bindings `-R ROOTFS` (kind "R") or `-S ROOTFS` (kind "S") add; missing host paths skipped."""
    table = {"R": R_BINDINGS, "S": S_BINDINGS}.get(kind)
    if table is None:
        raise ValueError(f"unknown binding set {kind!r} (expected 'R' or 'S')")
    out: list[Binding] = []
    for entry in table:
        path = normpath(os.path.abspath(rootfs)) if entry == "*path*" else normpath(entry)
        if os.path.lexists(path):
            out.append(Binding(host=path, guest=path))
    return out


def _is_under(path: str, prefix: str) -> bool:
    """True when `path` is `prefix` or below it, on a component boundary."""
    if prefix == "/":
        return path.startswith("/")
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] == "/")


def _rebase(path: str, old: str, new: str) -> str:
    """`path` (at or under `old`) moved to `new`."""
    if path == old:
        return new
    rest = path if old == "/" else path[len(old) :]
    return rest if new == "/" else new + rest


class BindingMap:
    """Lexical longest-match lookups over (host, guest) pairs, both ways.

    Paths must be normalised absolute paths (see `normpath`). Ties on the host
    side (the rootfs bound at its own path by -R, and at '/') go to the shortest
    guest path, so a rootfs file shows as /etc/passwd rather than /ROOTFS/etc/passwd.
    """

    __slots__ = ("_by_guest", "_by_host")

    def __init__(self, pairs: list[tuple[str, str]]):
        self._by_guest: dict[str, str] = {}
        self._by_host: dict[str, str] = {}
        for host, guest in pairs:
            self._by_guest[guest] = host  # later bindings on the same guest path win
            best = self._by_host.get(host)
            if best is None or len(guest) < len(best):
                self._by_host[host] = guest

    @staticmethod
    def _longest(table: dict[str, str], path: str) -> str | None:
        probe = path
        while True:
            if probe in table:
                return probe
            if probe == "/":
                return None
            probe = probe.rpartition("/")[0] or "/"

    def guest_to_host(self, guest_path: str) -> str | None:
        """Host path of a (canonical) guest path through the longest binding, None if unbound."""
        key = self._longest(self._by_guest, guest_path)
        return None if key is None else _rebase(guest_path, key, self._by_guest[key])

    def paths(self) -> tuple[dict[str, str], list[str]]:
        """Each host path with its guest path (host_to_guest of it), and every guest path."""
        return dict(self._by_host), list(self._by_guest)

    def host_to_guest(self, host_path: str) -> str | None:
        """Guest path of a host path through the longest binding (by host), None if unbound."""
        key = self._longest(self._by_host, host_path)
        return None if key is None else _rebase(host_path, key, self._by_host[key])

    def binding_for_guest(self, guest_path: str) -> str | None:
        """Guest path of the binding that covers `guest_path` (longest match), or None."""
        return self._longest(self._by_guest, guest_path)

    def link_target(self, rootfs: str, guest_link: str, host_link: str, target: str) -> str:
        """PRoot's rule: an absolute symlink inside a binding (outside the rootfs) that points
        into that same binding reads, and resolves, as the guest path (`-b /lib:/foo`,
        `/lib/a -> /lib/b` shows `/foo/a -> /foo/b`); any other target is left as it is."""
        if rootfs == "/" or _is_under(host_link, rootfs):
            return target
        key = self.binding_for_guest(guest_link)
        if key is None or key == "/":
            return target
        host = self._by_guest[key]
        norm = normpath(target)
        return _rebase(norm, host, key) if _is_under(norm, host) else target
