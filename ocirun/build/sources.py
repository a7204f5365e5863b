"""COPY/ADD sources that are not files of a root: heredocs (`COPY <<EOF /path`) and,
for ADD, http(s) URLs.

Each becomes a file in a private directory of the step, then goes through the
same copy as context files (ocirun.build.context): a heredoc is a 0644 file
named after its delimiter, its body expanded with the build's variables unless
the delimiter was quoted; a URL is downloaded (its name: the URL path's last
part), 0600 as docker makes it, with the Last-Modified time when the server
sends one, checked against `--checksum=sha256:...` (or sha384/sha512) when
given. A remote archive is not unpacked (docker neither). The step's cache key
is the content's digest, so a URL is fetched on every build and the step is
CACHED when the bytes did not change.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import posixpath
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ocirun.build.context import Source
from ocirun.build.heredoc import Heredoc, expand_body, is_marker
from ocirun.errors import OcirunError

URL_PREFIXES = ("http://", "https://")
TIMEOUT = 60
_CHUNK = 1 << 20


@dataclass
class MadeSources:
    """The sources of one COPY/ADD: patterns in the context (or stage), and made files."""

    plain: list[str] = field(default_factory=list)
    made: list[tuple[Source, str, int]] = field(default_factory=list)  # (its root, name, mode)

    @property
    def count(self) -> int:
        return len(self.plain) + len(self.made)


def split_sources(cmd: str, words: list[str], heredocs: list[Heredoc], lookup: Callable[[str], str],
                  checksum: str | None, tmp: Path, where: str) -> MadeSources:
    """Sort a COPY/ADD's sources; heredoc files and downloads are made below `tmp`."""
    docs = {d.name: d for d in heredocs}
    out = MadeSources()
    urls = [w for w in words if w.startswith(URL_PREFIXES)]
    if checksum is not None and (len(urls) != 1 or len(words) != 1):
        raise OcirunError(f"{where}: --checksum needs exactly one http(s) source")
    for i, w in enumerate(words):
        name = is_marker(w)
        if name is not None and name in docs:
            d = docs[name]
            root = _private(tmp, f"heredoc-{i}")
            (root / name).write_text(expand_body(d.body, lookup) if d.expand else d.body)
            out.made.append((Source(root, what="heredoc"), name, 0o644))
        elif w.startswith("git@") or (w.endswith(".git") and "://" in w):
            raise OcirunError(f"{where}: ADD of a git repository is not supported (use RUN git clone)")
        elif w.startswith(URL_PREFIXES):
            if cmd != "ADD":
                raise OcirunError(f"{where}: source can't be a URL for COPY (use ADD)")
            root = _private(tmp, f"url-{i}")
            out.made.append((Source(root, what=w), fetch(w, root, checksum, where), 0o600))
        else:
            out.plain.append(w)
    return out


def _private(tmp: Path, name: str) -> Path:
    root = tmp / name
    root.mkdir(mode=0o700)
    return root


def fetch(url: str, into: Path, checksum: str | None, where: str) -> str:
    """Download `url` into the directory `into`; the file's name."""
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path)) or "index.html"
    if name in (".", ".."):
        name = "index.html"
    want = _parse_checksum(checksum, where) if checksum else None
    h = hashlib.new(want[0] if want else "sha256")
    req = urllib.request.Request(url, headers={"User-Agent": "ocirun-build"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp, open(into / name, "wb") as out:
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
            modified = resp.headers.get("Last-Modified")
    except urllib.error.HTTPError as exc:
        raise OcirunError(f"{where}: {url}: {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OcirunError(f"{where}: {url}: {reason}") from None
    if want and h.hexdigest() != want[1]:
        raise OcirunError(f"{where}: {url}: checksum mismatch: expected {checksum}, got {want[0]}:{h.hexdigest()}")
    if modified:
        try:
            t = email.utils.parsedate_to_datetime(modified).timestamp()
            os.utime(into / name, (t, t))
        except (TypeError, ValueError, OverflowError):
            pass
    return name


def _parse_checksum(text: str, where: str) -> tuple[str, str]:
    algo, _, hexdigest = text.partition(":")
    if algo not in ("sha256", "sha384", "sha512") or not hexdigest:
        raise OcirunError(f"{where}: invalid --checksum {text!r}: expected sha256:HEX (or sha384, sha512)")
    return algo, hexdigest.lower()
