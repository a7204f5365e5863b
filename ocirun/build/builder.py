"""`ocirun build`: run a Dockerfile's stages, one step per instruction, with a cache.

Every step turns a State (config + layers) into the next one. RUN, COPY and
ADD add a layer (ocirun.build.run_step, ocirun.build.context -> layers.layerwrite);
the other instructions change the config only (ocirun.build.config_steps).
Each step's result is cached under a key made of the parent's config digest,
the instruction after expansion, the build args a RUN sees and the digest of
what a COPY reads: a step whose key is known reuses its config and layer (the
history's times too, so the following keys match). Tags are set only on the
finished image; everything before is stored untagged (see ocirun.build.state).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import posixpath
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from layers.imagedoc import add_history, empty_config, rfc3339
from layers.layerwrite import write_layer
from ocirun.build import dockerfile as dfmod
from ocirun.build.config_steps import StepEnv, apply_config_step, env_dict, shell_or_exec
from ocirun.build.context import CopySpec, IgnoreRules, Source, copy_entries, dedup, entries_digest
from ocirun.build.heredoc import run_argv
from ocirun.build.mounts import MountEnv, program_volume, step_mounts
from ocirun.build.sources import split_sources
from ocirun.build.stages import (
    Args,
    Stage,
    automatic_args,
    needed_stages,
    pick_target,
    split_stages,
)
from ocirun.build.state import State, Trees, layer_descriptor
from ocirun.errors import OcirunError
from ocirun.util.fs import atomic_write

# config keys of docker's own bookkeeping that a built image does not inherit
_DROPPED = ("container", "container_config", "docker_version", "id", "parent")


@dataclass
class BuildOptions:
    context: Path
    dockerfile: Path
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    platform: str | None = None
    no_cache: bool = False
    pull: bool = False
    quiet: bool = False
    compression: str = "gzip"
    compression_level: int | None = None  # None: layers.layerwrite.DEFAULT_LEVELS
    docker_format: bool = False
    epoch: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Path] = field(default_factory=dict)  # --secret id -> file


class Cache:
    """Step results by key: `<store>/build-cache/<hex>.json` = {"config", "layer"}."""

    def __init__(self, root: Path, blobs: Any, enabled: bool):
        self.dir, self.blobs, self.enabled = root / "build-cache", blobs, enabled

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        try:
            doc = json.loads((self.dir / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        layer = doc.get("layer")
        if layer is not None and not self.blobs.has(layer["digest"]):
            return None  # the layer was garbage-collected: build the step again
        return doc

    def put(self, key: str, config: dict[str, Any], layer: dict[str, Any] | None) -> None:
        with contextlib.suppress(OSError):
            atomic_write(self.dir / f"{key}.json", json.dumps({"config": config, "layer": layer}).encode())


class Builder:
    """One build: parse, run the stages up to the target, store and tag the image."""

    def __init__(self, store: Any, opts: BuildOptions, out: Callable[[str], None] | None = None):
        from ocirun.run.containers import ContainerStore

        self.store, self.opts = store, opts
        self.cstore = ContainerStore(store.root)
        self.trees = Trees(store)
        self.cache = Cache(store.root, store.blobs, not opts.no_cache)
        self.out = out or (lambda s: print(s, flush=True))
        self.say = (lambda s: None) if opts.quiet else self.out
        self.stage_states: dict[str, State] = {}
        self.secrets = dict(opts.secrets)
        self.step = 0
        self.total = 0

    # -- the whole build ---------------------------------------------------------------

    def build(self) -> Any:
        from ocirun.build.run_step import remove_leftovers

        path = str(self.opts.dockerfile)
        try:
            text = self.opts.dockerfile.read_text()
        except OSError as exc:
            raise OcirunError(f"cannot read {path}: {exc.strerror}") from None
        df = dfmod.parse(text, _shown_path(self.opts))
        global_args, stages = split_stages(df)
        last = pick_target(stages, self.opts.target, df.path)
        self.df = df
        self.args = Args(dict(self.opts.build_args), automatic_args(self.opts.platform))
        self.ignore = IgnoreRules.load(self.opts.context)
        remove_leftovers(self.cstore)
        for inst in global_args:
            self.args.declare_global(inst, df.escape, df.path)
        wanted = needed_stages(stages, last, self._expand_global)
        self.total = len(global_args) + sum(1 + len(s.body) for s in wanted)
        for inst in global_args:
            self._announce(inst)
        state = None
        for stage in wanted:
            state = self._stage(stage)
            self.stage_states[str(stage.index)] = state
            if stage.name:
                self.stage_states[stage.name] = state
        assert state is not None
        for name in self.args.unused():
            print(f"[Warning] One or more build-args [{name}] were not consumed", file=sys.stderr)
        return self._finish(state)

    def _finish(self, state: State) -> Any:
        if self.opts.labels:
            state.inner.setdefault("Labels", {}).update(self.opts.labels)
        if self.opts.epoch is not None:
            state.config["created"] = rfc3339(self.opts.epoch)
        rec = self.trees.final(state, list(self.opts.tags), docker=self.opts.docker_format)
        if self.opts.quiet:
            self.out(rec.id)
        else:
            self.out(f"Successfully built {rec.short_id}")
            for t in self.opts.tags:
                self.out(f"Successfully tagged {_familiar(t)}")
        return rec

    def _announce(self, inst: dfmod.Instruction) -> None:
        self.step += 1
        self.say(f"Step {self.step}/{self.total} : {inst.original}")

    # -- stages ----------------------------------------------------------------------------

    def _expand_global(self, text: str) -> str:
        """`text` expanded as FROM lines are: with the global ARGs and the automatic ones."""
        return dfmod.expand(text, {**self.args.auto, **self.args.globals_}, self.df.escape)

    def _stage(self, stage: Stage) -> State:
        self._announce(stage.from_inst)
        state = self._from(stage)
        self.say(f" ---> {_short(state.id)}")
        scope: dict[str, str] = {}
        se = StepEnv(self.df.path, self.df.escape, {})
        for inst in self._triggers(state, stage.from_inst) + stage.body:
            self._announce(inst)
            se.vars = {**scope, **env_dict(state.inner)}
            if inst.cmd == "ARG":
                self.args.declare(inst, scope, se.vars, self.df.escape, self.df.path)
                continue
            state = self._step(inst, state, scope, se)
        return state

    def _triggers(self, state: State, from_inst: dfmod.Instruction) -> list[dfmod.Instruction]:
        """The base's ONBUILD triggers, to run right after FROM; the new image does not
        inherit them (docker's rules: no ONBUILD, FROM or MAINTAINER among them)."""
        texts = state.inner.pop("OnBuild", None) or []
        out = []
        for text in texts:
            inst = dfmod.parse_instruction(self.df.path, from_inst.line, str(text))
            if inst.cmd in ("ONBUILD", "FROM", "MAINTAINER"):
                raise dfmod.DockerfileError(
                    f"{from_inst.where(self.df.path)}: {inst.cmd} isn't allowed as an ONBUILD trigger")
            out.append(inst)
        if out:
            self.total += len(out)
            self.say(f"# Executing {len(out)} build trigger{'s' if len(out) > 1 else ''}")
        return out

    def _from(self, stage: Stage) -> State:
        inst = stage.from_inst
        ref = self._expand_global(stage.base)
        platform = inst.flags.get("platform")
        if platform:
            platform = self._expand_global(platform)
        platform = platform or self.opts.platform
        if ref.lower() in self.stage_states:
            return copy.deepcopy(self.stage_states[ref.lower()])
        if ref == "scratch":
            from registry.platform import Platform, host_platform

            p = Platform.parse(platform) if platform else host_platform()
            return State(empty_config(p.os, p.architecture, p.variant))
        from ocirun.run.runner import get_image

        rec = get_image(self.store, ref, platform, "always" if self.opts.pull else "missing")
        config = copy.deepcopy(rec.config)
        for key in _DROPPED:
            config.pop(key, None)
        layers = json.loads((rec.path / "manifest.json").read_text()).get("layers") or []
        return State(config, [layer_descriptor(d, False) for d in layers], rec.id, [])

    # -- steps -------------------------------------------------------------------------------

    def _step(self, inst: dfmod.Instruction, state: State, scope: dict[str, str], se: StepEnv) -> State:
        if inst.cmd == "RUN":
            return self._run(inst, state, scope, se)
        if inst.cmd in ("COPY", "ADD"):
            return self._copy(inst, state, se)
        config = state.copy_config()
        apply_config_step(inst, config, se)
        return self._cached_or(state, [inst.cmd, config.get("config"), config.get("author")],
                               lambda: (config, None), inst.original, comment=None)

    def _cached_or(self, state: State, key_parts: list[Any], make, created_by: str,
                   comment: str | None = None) -> State:
        key = self.cache.key(state.id, key_parts)
        hit = self.cache.get(key)
        if hit is not None:
            self.say(" ---> CACHED")
            new = state.derive(hit["config"], hit["layer"])
        else:
            config, blob = make()
            config = add_history(config, created_by, self._now(), blob, comment)
            layer = blob.descriptor() if blob is not None else None
            self.cache.put(key, config, layer)
            new = state.derive(config, layer)
        self.say(f" ---> {_short(new.id)}")
        return new

    def _now(self) -> str:
        return rfc3339(self.opts.epoch) if self.opts.epoch is not None else rfc3339()

    def _run(self, inst: dfmod.Instruction, state: State, scope: dict[str, str], se: StepEnv) -> State:
        from ocirun.build.run_step import run_changes

        argv = shell_or_exec(inst, state.inner)
        program = None
        if inst.heredocs and inst.json_args is None:
            argv, program = run_argv(inst.rest, inst.heredocs, argv[:-1])
        image_env = env_dict(state.inner)
        env = {k: v for k, v in scope.items() if k not in image_env}
        env.update({k: v for k, v in self.args.proxies().items() if k not in image_env})
        platform = state.platform
        shown = " ".join(argv)
        history = f"RUN {shown}" if not scope else f"RUN |{len(scope)} " + " ".join(
            f"{k}={v}" for k, v in sorted(scope.items())) + f" {shown}"

        with contextlib.ExitStack() as step:
            tmp = step.enter_context(self.trees.staging())
            mounts = step_mounts(inst.mounts, self._mount_env(inst, state, se, tmp))
            if program is not None:
                mounts.volumes.append(program_volume(program.name, program.body, tmp))
            staged: list[Path] = []

            def make():
                rec = self.trees.record(state)
                with self._quiet_output():
                    entries = step.enter_context(run_changes(
                        self.cstore, state.config, rec.id, rec.rootfs, argv, env, platform, shown, mounts.volumes))
                with ThreadPoolExecutor(1, "layer") as pool:  # compress while the next tree is made
                    layer = pool.submit(write_layer, entries, self.store.blobs, self.opts.compression,
                                        self.opts.epoch, self.opts.compression_level)
                    staged.append(step.enter_context(self.trees.derived(rec, entries, self.opts.epoch)))
                    blob = layer.result()
                return state.copy_config(), blob

            key = ["RUN", argv, sorted(env.items()), platform, self._compression()]
            new = self._cached_or(state, key + ([mounts.key] if mounts.key else []), make, history)
            if staged:
                self.trees.adopt(new, staged[0])
            return new

    def _mount_env(self, inst: dfmod.Instruction, state: State, se: StepEnv, tmp: Path) -> MountEnv:
        def stage_root(name: str) -> tuple[Path, str] | None:
            name = dfmod.expand(name, se.vars, se.escape)
            st = self.stage_states.get(name.lower())
            if st is not None:
                return self.trees.rootfs(st), st.id
            from ocirun.run.runner import get_image

            rec = get_image(self.store, name, None, "missing")
            return self.store.ensure_unpacked(rec), rec.id

        def context_digest(rel: str) -> str:
            spec = CopySpec([rel or "."], "/m/")
            return entries_digest(copy_entries(Source(self.opts.context, self.ignore), spec, tmp))

        return MountEnv(se.where(inst), state.inner.get("WorkingDir") or "/", self.opts.context,
                        self.store.root / "build-cache" / "mounts", self.secrets, tmp, stage_root, context_digest)

    def _compression(self) -> Any:
        """What the cache keys on for the layer's bytes (the level only when one was chosen)."""
        if self.opts.compression_level is None:
            return self.opts.compression
        return [self.opts.compression, self.opts.compression_level]

    @contextlib.contextmanager
    def _quiet_output(self):
        """With -q the RUN output is kept aside, and shown (on stderr) only if the step fails."""
        if not self.opts.quiet:
            yield
            return
        sys.stdout.flush()
        with tempfile.TemporaryFile() as log:
            saved = os.dup(1), os.dup(2)
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            except BaseException:
                os.dup2(saved[1], 2)
                log.seek(0)
                sys.stderr.buffer.write(log.read())
                sys.stderr.flush()
                raise
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])

    def _copy(self, inst: dfmod.Instruction, state: State, se: StepEnv) -> State:
        where = se.where(inst)
        for flag in ("parents", "exclude", "keep-git-dir"):
            if flag in inst.flags:
                raise OcirunError(f"{where}: --{flag} is not supported")
        words = inst.json_args if inst.json_args is not None else dfmod.expand_words(inst.rest, se.vars, se.escape)
        if len(words) < 2:
            raise dfmod.DockerfileError(f"{where} requires at least two arguments")
        dest = words[-1]
        workdir = state.inner.get("WorkingDir") or "/"
        full = posixpath.normpath(posixpath.join(workdir, dest)).rstrip("/")
        into = dest.endswith(("/", "/.")) or dest in (".", "..")
        spec = CopySpec([], full + "/" if into or full == "" else full, unpack_tars=inst.cmd == "ADD")
        self._ownership(inst, state, spec, se)
        src = self._source(inst, se)
        if state.layers:
            from ocirun.run.plan import guest_file

            found = guest_file(self.trees.rootfs(state), spec.dest)
            spec.dest_is_dir = found is not None and found.is_dir()
        with self.trees.staging() as tmp:
            srcs = split_sources(inst.cmd, list(words[:-1]), inst.heredocs, lambda m: dfmod.expand(m, se.vars),
                                 inst.flags.get("checksum"), tmp, where)
            if srcs.count > 1 and not spec.dest.endswith("/"):
                spec.dest += "/"
            entries = copy_entries(src, replace(spec, sources=srcs.plain), tmp) if srcs.plain else []
            for root, name, mode in srcs.made:
                chmod = spec.chmod if spec.chmod is not None else mode
                entries += copy_entries(root, replace(spec, sources=[name], unpack_tars=False, chmod=chmod), tmp)
            entries = dedup(entries)
            digest = entries_digest(entries)

            def make():
                blob = write_layer(entries, self.store.blobs, self.opts.compression, self.opts.epoch,
                                   self.opts.compression_level)
                return state.copy_config(), blob

            return self._cached_or(state, [inst.cmd, spec.dest, digest, self._compression()], make,
                                   f"{inst.cmd} {inst.rest}")

    def _ownership(self, inst: dfmod.Instruction, state: State, spec: CopySpec, se: StepEnv) -> None:
        chmod = inst.flags.get("chmod")
        if chmod is not None:
            try:
                spec.chmod = int(chmod, 8)
            except ValueError:
                raise OcirunError(f"{se.where(inst)}: invalid --chmod {chmod!r}: expected octal bits") from None
        chown = inst.flags.get("chown")
        if not chown:
            return
        chown = dfmod.expand(chown, se.vars, se.escape)
        user, _, group = chown.partition(":")
        if user.isdigit() and (not group or group.isdigit()):
            spec.uid = int(user)
            spec.gid = int(group) if group else spec.uid
            return
        from ocirun.run.plan import resolve_user

        rootfs = self.trees.rootfs(state)
        guest = resolve_user(rootfs, chown)
        spec.uid, spec.gid = guest.uid, (guest.gid if group else guest.uid)

    def _source(self, inst: dfmod.Instruction, se: StepEnv) -> Source:
        name = inst.flags.get("from")
        if name is None:
            return Source(self.opts.context, self.ignore)
        name = dfmod.expand(name, se.vars, se.escape)
        st = self.stage_states.get(name.lower())
        if st is not None:
            return Source(self.trees.rootfs(st), what=f"stage {name}")
        from ocirun.run.runner import get_image

        rec = get_image(self.store, name, None, "missing")
        return Source(self.store.ensure_unpacked(rec), what=f"image {name}")


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[1][:12]


def _familiar(ref: str) -> str:
    from layers.records import familiar
    from registry.reference import parse_image_reference

    r = parse_image_reference(ref)
    return familiar(f"{r.name}:{r.tag or 'latest'}")


def _shown_path(opts: BuildOptions) -> str:
    """The Dockerfile as errors name it: relative to the context when inside it."""
    try:
        return str(opts.dockerfile.resolve().relative_to(opts.context.resolve()))
    except ValueError:
        return str(opts.dockerfile)

