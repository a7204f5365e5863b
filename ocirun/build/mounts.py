"""RUN --mount: BuildKit's mounts as bindings of the step's container (never in its layer).

- `type=bind` (the default): `source` (default the root) of the build context, or of
  a stage or image (`from=`), read-only at `target`. A write there fails (EROFS);
  BuildKit's `rw` (writes thrown away) is refused.
- `type=cache`: a directory of the builder, `<store>/build-cache/mounts/<id>`, kept
  from build to build (`id` defaults to the target), writable.
- `type=tmpfs`: an empty directory for this step only.
- `type=secret`: the file `ocirun build --secret id=ID,src=FILE` named, read-only
  at `target` (default `/run/secrets/ID`); a secret that was not given is an
  error only when `required=true`, as in BuildKit.
The cache key of the step includes each mount's options, and for a bind the
digest of what it shows (the context's files, or the stage's state).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocirun.errors import OcirunError
from ocirun.run.options import Volume

TYPES = ("bind", "cache", "tmpfs", "secret")
_TARGET_KEYS = ("target", "dst", "destination")
_SOURCE_KEYS = ("source", "src")
_KNOWN = {
    "bind": {"type", "from", "readonly", "ro", *_TARGET_KEYS, *_SOURCE_KEYS},
    "cache": {"type", "id", "sharing", "mode", "uid", "gid", "readonly", "ro", *_TARGET_KEYS},
    "tmpfs": {"type", "size", *_TARGET_KEYS},
    "secret": {"type", "id", "required", "mode", "uid", "gid", *_TARGET_KEYS},
}


@dataclass
class MountEnv:
    """What mounts need from the build: where things are, how names resolve."""

    where: str  # "Dockerfile:7: RUN", for errors
    workdir: str
    context: Path
    cache_root: Path
    secrets: dict[str, Path]
    tmp: Path  # a private directory for this step's tmpfs mounts
    stage_root: Callable[[str], tuple[Path, str] | None]  # name -> (tree, cache key) of a stage or image
    context_digest: Callable[[str], str]  # a context path -> digest of what it holds


@dataclass
class StepMounts:
    volumes: list[Volume] = field(default_factory=list)
    key: list[Any] = field(default_factory=list)


def _pick(opts: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((opts[k] for k in keys if k in opts), None)


def _target(opts: dict[str, str], env: MountEnv, default: str | None = None) -> str:
    target = _pick(opts, _TARGET_KEYS) or default
    if not target:
        raise OcirunError(f"{env.where}: --mount type={opts.get('type', 'bind')} needs a target")
    return posixpath.normpath(posixpath.join(env.workdir, target))


def _inside(root: Path, rel: str | None) -> Path:
    parts = [p for p in (rel or "").split("/") if p not in ("", ".", "..")]
    return root.joinpath(*parts) if parts else root


def _bind(opts: dict[str, str], env: MountEnv) -> tuple[Volume, Any]:
    if opts.get("rw", opts.get("readwrite")) is not None:
        raise OcirunError(f"{env.where}: --mount type=bind,rw is not supported (the bind is read-only)")
    source = _pick(opts, _SOURCE_KEYS)
    name = opts.get("from")
    if name:
        found = env.stage_root(name)
        if found is None:
            raise OcirunError(f"{env.where}: --mount from={name}: no such stage or image")
        root, key = found
        host = _inside(root, source)
    else:
        host = _inside(env.context, source)
        key = env.context_digest(str(host.relative_to(env.context)) if host != env.context else "")
    if not os.path.lexists(host):
        raise OcirunError(f"{env.where}: --mount source {source or '/'}: no such file or directory")
    return Volume(str(host), _target(opts, env), readonly=True), key


def _cache(opts: dict[str, str], env: MountEnv) -> tuple[Volume, Any]:
    target = _target(opts, env)
    cid = opts.get("id") or target
    host = env.cache_root / hashlib.sha256(cid.encode()).hexdigest()[:32]
    if not host.is_dir():
        host.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(ValueError, OSError):
            os.chmod(host, int(opts.get("mode", "755"), 8))
    ro = opts.get("readonly", opts.get("ro", "false")) != "false"
    return Volume(str(host), target, readonly=ro), None


def _tmpfs(opts: dict[str, str], env: MountEnv) -> tuple[Volume, Any]:
    host = Path(tempfile.mkdtemp(prefix="tmpfs-", dir=env.tmp))
    os.chmod(host, 0o1777)
    return Volume(str(host), _target(opts, env)), None


def _secret(opts: dict[str, str], env: MountEnv) -> tuple[Volume | None, Any]:
    sid = opts.get("id") or posixpath.basename(_pick(opts, _TARGET_KEYS) or "")
    if not sid:
        raise OcirunError(f"{env.where}: --mount type=secret needs an id")
    src = env.secrets.get(sid)
    if src is None:
        if opts.get("required", "false") != "false":
            raise OcirunError(f"{env.where}: secret {sid} is required but was not given (--secret id={sid},src=FILE)")
        return None, None
    return Volume(str(src), _target(opts, env, f"/run/secrets/{sid}"), readonly=True), None


_MAKERS = {"bind": _bind, "cache": _cache, "tmpfs": _tmpfs, "secret": _secret}


def step_mounts(mounts: list[dict[str, str]], env: MountEnv) -> StepMounts:
    """The bindings (and cache key parts) of a RUN's --mount options."""
    out = StepMounts()
    for opts in mounts:
        kind = opts.get("type", "bind")
        if kind not in TYPES:
            raise OcirunError(f"{env.where}: --mount type={kind} is not supported ({', '.join(TYPES)} are)")
        unknown = sorted(set(opts) - _KNOWN[kind] - {"rw", "readwrite", "size"})
        if unknown:
            raise OcirunError(f"{env.where}: --mount type={kind}: unknown option {unknown[0]!r}")
        volume, key = _MAKERS[kind](opts, env)
        if volume is not None:
            out.volumes.append(volume)
        out.key.append([sorted(opts.items()), key])
    return out


def program_volume(name: str, body: str, tmp: Path) -> Volume:
    """A heredoc with a `#!` line as a program: a read-only /dev/pipes/NAME (BuildKit's place)."""
    from ocirun.build.heredoc import PIPES

    d = Path(tempfile.mkdtemp(prefix="pipes-", dir=tmp))
    (d / name).write_text(body)
    os.chmod(d / name, 0o755)
    return Volume(str(d), PIPES, readonly=True)


def parse_secret(spec: str, tmp_dir: Callable[[], Path]) -> tuple[str, Path]:
    """`--secret id=ID,src=FILE` (or `source=`, or `env=VAR`): (id, a file holding it)."""
    opts = dict(p.partition("=")[::2] for p in spec.split(",") if p)
    sid = opts.get("id")
    if not sid:
        raise OcirunError(f"invalid --secret {spec!r}: expected id=ID,src=FILE or id=ID,env=VAR", 125)
    if "env" in opts:
        value = os.environ.get(opts["env"])
        if value is None:
            raise OcirunError(f"--secret {sid}: the variable {opts['env']} is not set", 125)
        path = tmp_dir() / f"secret-{hashlib.sha256(sid.encode()).hexdigest()[:16]}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return sid, path
    src = opts.get("src") or opts.get("source")
    if not src or not os.path.isfile(src):
        raise OcirunError(f"--secret {sid}: {src or 'no src='}: no such file", 125)
    return sid, Path(src).resolve()
