"""`ocirun commit`: a new image = the container's image + one layer of its changes.

The layer is what layers.diff finds between the container tree and its image
(owners and modes as the guest saw them, from the fake-root database), written by
layers.layerwrite; the config is the image's with the container's settings (as
docker: Cmd/Entrypoint from the command it ran, Env with its -e variables,
WorkingDir, User) and one more history entry; the manifest lists the image's layers
plus the new one, in the image's own media types. Store.add_image stores it and
tags it only once it is complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from layers.diff import container_changes
from layers.imagedoc import DOCKER_MANIFEST, add_history, canonical_json, manifest, rfc3339
from layers.layerwrite import source_date_epoch, write_layer
from ocirun.errors import OcirunError
from ocirun.run.containers import Container
from ocirun.run.scheduler import passes

# what the runner puts in every container's environment, not the image's settings
_RUNNER_ENV = frozenset({"HOSTNAME", "HOME", "TERM"})
# the instructions docker's --change accepts
CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR")


@dataclass
class CommitOptions:
    """docker commit's options."""

    author: str = ""
    message: str = ""
    changes: list[str] = field(default_factory=list)  # Dockerfile instructions (--change)
    tags: list[str] = field(default_factory=list)


def _env(image_env: list[str], run_env: dict[str, str]) -> list[str]:
    """The image's Env with the container's own variables (-e) set over it."""
    env = dict(item.partition("=")[::2] for item in image_env)
    for k, v in run_env.items():
        if k in env or (k not in _RUNNER_ENV and not passes(k)):
            env[k] = v
    return [f"{k}={v}" for k, v in env.items()]


def container_config(inner: dict[str, Any], c: Container) -> dict[str, Any]:
    """The image's runtime config ("config") as the container ran it."""
    out = dict(inner)
    plan = c.plan
    entrypoint = list(inner.get("Entrypoint") or [])
    if plan.argv[: len(entrypoint)] == entrypoint:
        cmd = plan.argv[len(entrypoint):]
    else:  # run --entrypoint X: docker keeps X as the entrypoint
        out["Entrypoint"], cmd = plan.argv[:1], plan.argv[1:]
    out["Cmd"] = cmd or None
    out["Env"] = _env(list(inner.get("Env") or []), plan.env)
    if plan.cwd and plan.cwd != "/":
        out["WorkingDir"] = plan.cwd
    if plan.user and plan.user != "0":
        out["User"] = plan.user
    return {k: v for k, v in out.items() if v not in (None, [], {}, "")}


def apply_changes(cfg: dict[str, Any], changes: list[str]) -> None:
    """Apply --change instructions to the config, with `ocirun build`'s own handlers."""
    if not changes:
        return
    from ocirun.build.config_steps import StepEnv, apply_config_step, env_dict
    from ocirun.build.dockerfile import parse

    df = parse("FROM scratch\n" + "\n".join(changes), "--change")
    se = StepEnv("--change", df.escape, env_dict(cfg.get("config") or {}))
    for inst in df.instructions[1:]:
        if inst.cmd not in CHANGE_COMMANDS:
            raise OcirunError(f"--change {inst.original!r}: {inst.cmd} is not a valid change command "
                              f"(one of {', '.join(CHANGE_COMMANDS)})")
        apply_config_step(inst, cfg, se)


def commit_container(store: Any, c: Container, opts: CommitOptions) -> Any:
    """Store the new image; returns its ImageRecord."""
    base = store.get(c.image_id)
    if base is None:
        raise OcirunError(f"the image of container {c.name} ({c.image}) is no longer in the store")
    base_manifest = json.loads((base.path / "manifest.json").read_bytes())
    docker = base_manifest.get("mediaType") == DOCKER_MANIFEST
    cfg = json.loads(json.dumps(base.config))
    cfg["config"] = container_config(cfg.get("config") or {}, c)
    apply_changes(cfg, opts.changes)  # a bad --change fails before any layer is written
    if opts.author:
        cfg["author"] = opts.author
    epoch = source_date_epoch()
    layer = write_layer(container_changes(c.image_root, c.rootfs, c.path), store.blobs, "gzip", epoch)
    cfg = add_history(cfg, " ".join(c.plan.argv), rfc3339(epoch), layer, opts.message or None)
    config = canonical_json(cfg)
    man = manifest(config, list(base_manifest.get("layers") or []) + [layer.descriptor(docker)], docker)
    return store.add_image(config, man, tags=opts.tags, source="commit")
