"""Stages of a Dockerfile and the ARG rules between them.

ARGs before the first FROM are global: FROM lines may use them, and a stage
sees one only after re-declaring it (`ARG NAME`). A stage's ARG takes the
--build-arg value, else its default, else the global value. The proxy
variables may be given as build args without any ARG (and are kept out of the
image's history), and TARGETPLATFORM/TARGETARCH/BUILDPLATFORM... are defined
automatically, as BuildKit does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ocirun.build.dockerfile import Dockerfile, DockerfileError, Instruction, expand
from registry.platform import Platform, host_platform

PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})


@dataclass
class Stage:
    index: int
    name: str | None
    base: str  # FROM's image (unexpanded)
    from_inst: Instruction
    body: list[Instruction] = field(default_factory=list)


def split_stages(df: Dockerfile) -> tuple[list[Instruction], list[Stage]]:
    """(global ARGs, stages in order); stage names are unique."""
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    names: set[str] = set()
    for inst in df.instructions:
        if inst.cmd == "FROM":
            words = inst.rest.split()
            name = words[2].lower() if len(words) == 3 else None
            if name is not None:
                if name in names:
                    raise DockerfileError(f"{inst.where(df.path)}: duplicate stage name {name!r}")
                names.add(name)
            stages.append(Stage(len(stages), name, words[0], inst))
        elif not stages:
            global_args.append(inst)
        else:
            stages[-1].body.append(inst)
    return global_args, stages


def pick_target(stages: list[Stage], target: str | None, path: str) -> int:
    """The index of the last stage to build."""
    if target is None:
        return len(stages) - 1
    for s in stages:
        if s.name == target.lower():
            return s.index
    raise DockerfileError(f"{path}: target stage {target!r} could not be found")


def stage_refs(stage: Stage) -> list[str]:
    """What a stage may name of the stages before it: its FROM, COPY/ADD --from, RUN
    --mount from= (unexpanded)."""
    refs = [stage.base]
    for inst in stage.body:
        if inst.cmd in ("COPY", "ADD") and "from" in inst.flags:
            refs.append(inst.flags["from"])
        for mount in inst.mounts if inst.cmd == "RUN" else ():
            if "from" in mount:
                refs.append(mount["from"])
    return refs


def needed_stages(stages: list[Stage], last: int, expand: Callable[[str], str]) -> list[Stage]:
    """The target and the stages it depends on, in order (BuildKit builds no others)."""
    by_name = {s.name: s.index for s in stages if s.name}
    want: set[int] = set()
    todo = [last]
    while todo:
        i = todo.pop()
        if i in want:
            continue
        want.add(i)
        for ref in stage_refs(stages[i]):
            name = expand(ref).lower()
            j = by_name.get(name, int(name) if name.isdigit() else None)
            if j is not None and j < i:
                todo.append(j)
    return [s for s in stages if s.index in want]


def automatic_args(target: str | None) -> dict[str, str]:
    """TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT and the BUILD* ones."""
    build = host_platform()
    tgt = Platform.parse(target) if target else build
    out = {}
    for prefix, p in (("TARGET", tgt), ("BUILD", build)):
        out[prefix + "PLATFORM"] = str(p)
        out[prefix + "OS"] = p.os
        out[prefix + "ARCH"] = p.architecture
        out[prefix + "VARIANT"] = p.variant or ""
    return out


@dataclass
class Args:
    """ARG values in scope, and which build args some ARG consumed."""

    given: dict[str, str]  # --build-arg
    auto: dict[str, str]
    globals_: dict[str, str] = field(default_factory=dict)
    consumed: set[str] = field(default_factory=set)

    def declare_global(self, inst: Instruction, escape: str, path: str) -> None:
        for name, value in self._decls(inst, {**self.auto, **self.globals_}, escape, path):
            self.globals_[name] = value if value is not None else ""

    def declare(self, inst: Instruction, scope: dict[str, str], vars_: dict[str, str], escape: str,
                path: str) -> None:
        """An ARG inside a stage: adds to `scope` (the stage's args)."""
        for name, value in self._decls(inst, vars_, escape, path):
            if value is None:
                value = self.globals_.get(name, self.auto.get(name))
            if value is not None:
                scope[name] = value

    def _decls(self, inst: Instruction, vars_: dict[str, str], escape: str, path: str):
        for word in inst.rest.split():
            name, eq, default = word.partition("=")
            if not name.replace("_", "a").isalnum():
                raise DockerfileError(f"{inst.where(path)}: invalid name {name!r}")
            if name in self.given:
                self.consumed.add(name)
                yield name, self.given[name]
            elif eq:
                yield name, expand(default, vars_, escape)
            else:
                yield name, None

    def proxies(self) -> dict[str, str]:
        out = {k: v for k, v in self.given.items() if k in PROXY_ARGS}
        self.consumed.update(out)
        return out

    def unused(self) -> list[str]:
        return sorted(set(self.given) - self.consumed - PROXY_ARGS)
