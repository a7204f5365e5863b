"""The instructions that only change the image config: ENV, LABEL, WORKDIR, USER,
CMD, ENTRYPOINT, EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK, ONBUILD, MAINTAINER.

Each handler gets the instruction, the config's runtime part ("config": Env,
Cmd, ...) and the expansion environment, and changes the config in place.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ocirun.build.dockerfile import DockerfileError, Instruction, expand, expand_words, key_values
from ocirun.errors import OcirunError

DEFAULT_SHELL = ["/bin/sh", "-c"]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


@dataclass
class StepEnv:
    """What an instruction sees: the Dockerfile's path and escape, the variables."""

    path: str
    escape: str
    vars: dict[str, str]
    cmd_set: bool = False  # a CMD in this stage (an ENTRYPOINT then keeps it)

    def where(self, inst: Instruction) -> str:
        return inst.where(self.path)


def env_dict(inner: dict[str, Any]) -> dict[str, str]:
    out = {}
    for item in inner.get("Env") or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _set_env(inner: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    env = env_dict(inner)
    for k, v in pairs:
        env[k] = v
    inner["Env"] = [f"{k}={v}" for k, v in env.items()]


def do_env(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    pairs = key_values(inst, se.vars, se.escape, se.path)
    _set_env(inner, pairs)
    se.vars.update(pairs)


def do_label(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    labels = dict(inner.get("Labels") or {})
    labels.update(key_values(inst, se.vars, se.escape, se.path))
    inner["Labels"] = labels


def do_maintainer(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    inner["__author__"] = inst.rest  # moved to the top-level "author" by the builder


def do_workdir(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    path = expand(inst.rest, se.vars, se.escape)
    inner["WorkingDir"] = posixpath.normpath(posixpath.join(inner.get("WorkingDir") or "/", path))


def do_user(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    inner["User"] = expand(inst.rest, se.vars, se.escape)


def shell_or_exec(inst: Instruction, inner: dict[str, Any]) -> list[str]:
    """The argv of RUN/CMD/ENTRYPOINT: exec form as written, shell form through SHELL."""
    if inst.json_args is not None:
        return list(inst.json_args)
    return list(inner.get("Shell") or DEFAULT_SHELL) + [inst.rest]


def do_cmd(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    inner["Cmd"] = shell_or_exec(inst, inner) if inst.rest else []
    se.cmd_set = True


def do_entrypoint(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    inner["Entrypoint"] = shell_or_exec(inst, inner) if inst.rest else []
    if not se.cmd_set:
        inner.pop("Cmd", None)  # docker: an ENTRYPOINT resets the CMD inherited from the base


def do_expose(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    ports = dict(inner.get("ExposedPorts") or {})
    for word in expand_words(inst.rest, se.vars, se.escape):
        num, _, proto = word.partition("/")
        if not re.fullmatch(r"\d+(-\d+)?", num) or proto not in ("", "tcp", "udp", "sctp"):
            raise DockerfileError(f"{se.where(inst)}: invalid port {word!r}")
        ports[f"{num}/{proto or 'tcp'}"] = {}
    inner["ExposedPorts"] = ports


def do_volume(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    vols = dict(inner.get("Volumes") or {})
    words = inst.json_args if inst.json_args is not None else expand_words(inst.rest, se.vars, se.escape)
    for w in words:
        if not w.strip():
            raise DockerfileError(f"{se.where(inst)}: a volume cannot be empty")
        vols[w] = {}
    inner["Volumes"] = vols


def do_stopsignal(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    inner["StopSignal"] = expand(inst.rest, se.vars, se.escape)


def do_shell(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    if inst.json_args is None or not inst.json_args:
        raise DockerfileError(f"{se.where(inst)} requires the arguments to be in JSON form")
    inner["Shell"] = list(inst.json_args)


def _duration(text: str, where: str) -> int:
    total, pos = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _UNIT_NS[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise DockerfileError(f"{where}: invalid duration {text!r}")
    return total


def do_healthcheck(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    word, _, rest = inst.rest.partition(" ")
    if word.upper() == "NONE":
        inner["Healthcheck"] = {"Test": ["NONE"]}
        return
    if word.upper() != "CMD" or not rest.strip():
        raise DockerfileError(f"{se.where(inst)}: expected HEALTHCHECK [OPTIONS] CMD command, or NONE")
    from ocirun.build.dockerfile import _json_form

    args = _json_form(rest.strip())
    check: dict[str, Any] = {"Test": ["CMD", *args] if args is not None else ["CMD-SHELL", rest.strip()]}
    names = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
             "start-interval": "StartInterval"}
    for flag, value in inst.flags.items():
        if flag == "retries":
            if not value.isdigit():
                raise DockerfileError(f"{se.where(inst)}: --retries must be a number")
            check["Retries"] = int(value)
        else:
            check[names[flag]] = _duration(value, se.where(inst))
    inner["Healthcheck"] = check


def do_onbuild(inst: Instruction, inner: dict[str, Any], se: StepEnv) -> None:
    trigger = inst.rest.split(None, 1)[0].upper()
    if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
        raise DockerfileError(f"{se.where(inst)}: {trigger} isn't allowed as an ONBUILD trigger")
    inner["OnBuild"] = list(inner.get("OnBuild") or []) + [inst.rest]


HANDLERS: dict[str, Callable[[Instruction, dict[str, Any], StepEnv], None]] = {
    "ENV": do_env, "LABEL": do_label, "WORKDIR": do_workdir, "USER": do_user, "CMD": do_cmd,
    "ENTRYPOINT": do_entrypoint, "EXPOSE": do_expose, "VOLUME": do_volume,
    "STOPSIGNAL": do_stopsignal, "SHELL": do_shell, "HEALTHCHECK": do_healthcheck,
    "ONBUILD": do_onbuild, "MAINTAINER": do_maintainer,
}


def apply_config_step(inst: Instruction, config: dict[str, Any], se: StepEnv) -> None:
    """Change `config` (the whole image config) as the instruction says."""
    inner = config.setdefault("config", {})
    try:
        HANDLERS[inst.cmd](inst, inner, se)
    except DockerfileError:
        raise
    except OcirunError as exc:
        raise DockerfileError(f"{se.where(inst)}: {exc.message}") from None
    author = inner.pop("__author__", None)
    if author is not None:
        config["author"] = author
