"""The path resolution cache of a PathTranslator.

Policy (OCIRUN_PATH_CACHE=0 or cache=False turns it off):
- entries for every EXISTING component met during walks (never missing ones, whose
  later creation by open/mknod is not an invalidation event): a warm lookup of
  /usr/lib/x86_64-linux-gnu/libc.so.6 makes no host query at all; result caches
  (one per follow_last), emptied by every invalidation, so they never outlive a
  symlink, a rename, a removal or a binding change; errors are never cached.
- `invalidate(host_path)` drops every entry at or under `host_path` (all guest
  aliases of it); the engine calls it after the guest's own rename (both paths),
  unlink, rmdir, symlink, link, mkdir and mount of a binding.
- Warm shortcut (_leaf): a plain absolute path whose parent directory is cached
  costs one lstat of the leaf, none if the leaf is cached too.
- Nothing under the host's /proc is cached. Mutations made outside the guest are
  NOT seen until the next invalidation: turn the cache off for trees shared with
  concurrent writers. Search permission (EACCES) is checked by the lstat calls of
  a walk, so a warm lookup does not re-check it.

Structure:
- entries: canonical guest path -> (host path, kind, symlink target) of every
  EXISTING component met during walks; host_keys/host_children index them by
  host path so invalidate() reaches every guest alias of a host path and of
  everything under it (through bindings too, even from above the rootfs).
- full_follow / full_nofollow: joined guest path -> (guest, host) results,
  emptied by every invalidation.
Every dict is bounded (CACHE_MAX entries, then emptied).
"""

from __future__ import annotations

from ocirun.engine.path.bindings import normpath

CACHE_MAX = 1 << 16  # entries per cache before it is emptied (bounded memory)


class PathCache:
    __slots__ = ("entries", "host_keys", "host_children", "full_follow", "full_nofollow")

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, int, str | None]] = {}
        self.host_keys: dict[str, list[str]] = {}
        self.host_children: dict[str, set[str]] = {}
        self.full_follow: dict[str, tuple[str, str]] = {}
        self.full_nofollow: dict[str, tuple[str, str]] = {}

    def store(self, g: str, h: str, kind: int, target: str | None) -> None:
        """Remember one existing component."""
        entries = self.entries
        if len(entries) >= CACHE_MAX:
            self.drop_entries()
        entries[g] = (h, kind, target)
        keys = self.host_keys.get(h)
        if keys is None:
            self.host_keys[h] = [g]
        else:
            keys.append(g)
        # host parent -> children links, up to the first ancestor already linked, so
        # invalidating ANY host ancestor (even above the rootfs) reaches this entry
        children = self.host_children
        child = h
        parent = h.rpartition("/")[0]
        while parent != child:
            kids = children.get(parent)
            if kids is not None:
                kids.add(child)
                break
            children[parent] = {child}
            child = parent
            parent = parent.rpartition("/")[0]

    def drop_entries(self) -> None:
        self.entries.clear()
        self.host_keys.clear()
        self.host_children.clear()

    def invalidate(self, host_path: str) -> None:
        """Forget everything cached at or under `host_path` (a trailing '/' or '/.' is ignored)."""
        self.invalidate_many([normpath(host_path) if host_path else host_path])

    def invalidate_many(self, paths: list[str]) -> None:
        """invalidate() of each of these normalised host paths, at once."""
        self.full_follow.clear()
        self.full_nofollow.clear()
        if not self.entries:
            return
        if "/" in paths:
            self.drop_entries()
            return
        entries = self.entries
        host_keys = self.host_keys
        children = self.host_children
        stack = list(paths)
        while stack:
            h = stack.pop()
            keys = host_keys.pop(h, None)
            if keys:
                for g in keys:
                    entries.pop(g, None)
            kids = children.pop(h, None)
            if kids:
                stack.extend(kids)

    def clear(self) -> None:
        self.full_follow.clear()
        self.full_nofollow.clear()
        self.drop_entries()
