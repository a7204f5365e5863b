"""`ocirun build`: build an image from a Dockerfile (ocirun.build.builder)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from ocirun.cli.group import DockerCommand
from ocirun.errors import EXIT_OCIRUN, OcirunError

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _pairs(values: tuple[str, ...], what: str, from_env: bool) -> dict[str, str]:
    out = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not k:
            raise OcirunError(f"invalid {what} {v!r}: expected KEY=VALUE", EXIT_OCIRUN)
        if not eq:
            if not from_env or k not in os.environ:
                if from_env:
                    continue  # docker: `--build-arg NAME` with NAME unset is ignored
                raise OcirunError(f"invalid {what} {v!r}: expected KEY=VALUE", EXIT_OCIRUN)
            val = os.environ[k]
        out[k] = val
    return out


def _check_tags(tags: tuple[str, ...]) -> list[str]:
    from registry.reference import parse_image_reference

    for t in tags:
        try:
            ref = parse_image_reference(t)
        except OcirunError as exc:
            raise OcirunError(f"invalid argument {t!r} for \"-t, --tag\" flag: {exc.message}", EXIT_OCIRUN) from None
        if ref.digest:
            raise OcirunError(f"invalid argument {t!r} for \"-t, --tag\" flag: a tag cannot name a digest",
                              EXIT_OCIRUN)
    return list(tags)


@click.command("build", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-t", "--tag", "tags", multiple=True, metavar="NAME[:TAG]", help="Name and optionally a tag (repeatable).")
@click.option("-f", "--file", "file", metavar="FILE", help="Name of the Dockerfile (default: CONTEXT/Dockerfile).")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="Set a build-time variable.")
@click.option("--target", metavar="STAGE", help="Build the stage of this name and stop.")
@click.option("--platform", metavar="PLATFORM", help="Build for this platform (RUN under QEMU when foreign).")
@click.option("--no-cache", is_flag=True, help="Do not use the cache when building the image.")
@click.option("--pull", is_flag=True, help="Always pull the FROM images again.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id (RUN output on failure only).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set metadata for the image.")
@click.option("--compression", type=click.Choice(["gzip", "zstd"]), default="gzip", show_default=True,
              help="Compression of the new layers")
@click.option("--secret", "secrets", multiple=True, metavar="id=ID,src=FILE",
              help="A secret for RUN --mount=type=secret (src=FILE or env=VAR).")
@click.option("--compression-level", "level", type=int, metavar="N",
              help="Compression level of the new layers (gzip 1-9, default 1; zstd 1-19, default 3)")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker"]), default="oci", show_default=True,
              help="Manifest and config media types")
@click.argument("context_dir", metavar="CONTEXT")
@click.pass_context
def build(ctx: click.Context, tags, file, build_args, target, platform, no_cache, pull, quiet, labels,
          compression, level, fmt, secrets, context_dir) -> None:
    """Build an image from a Dockerfile.

    \b
    Usage:  ocirun build [OPTIONS] CONTEXT
    """
    from layers.layerwrite import LEVEL_RANGES, source_date_epoch
    from layers.store import Store
    from ocirun.build.builder import Builder, BuildOptions
    from ocirun.build.mounts import parse_secret
    from ocirun.run.options import parse_platform

    context = Path(context_dir)
    if context_dir == "-" or "://" in context_dir:
        raise OcirunError("the context must be a local directory (not stdin or a URL)", EXIT_OCIRUN)
    if not context.is_dir():
        raise OcirunError(f"unable to prepare context: path {context_dir!r} not found", EXIT_OCIRUN)
    lo, hi = LEVEL_RANGES[compression]
    if level is not None and not lo <= level <= hi:
        raise OcirunError(f"invalid --compression-level {level}: {compression} takes {lo} to {hi}", EXIT_OCIRUN)
    dockerfile = Path(file) if file else context / "Dockerfile"
    if file == "-":
        raise OcirunError("a Dockerfile from stdin is not supported: use -f FILE", EXIT_OCIRUN)
    if not dockerfile.is_file():
        raise OcirunError(f"cannot find the Dockerfile: {dockerfile}: no such file", EXIT_OCIRUN)
    opts = BuildOptions(
        context=context,
        dockerfile=dockerfile,
        tags=_check_tags(tags),
        build_args=_pairs(build_args, "--build-arg", from_env=True),
        target=target,
        platform=parse_platform(platform) if platform else None,
        no_cache=no_cache,
        pull=pull,
        quiet=quiet,
        compression=compression,
        compression_level=level,
        docker_format=fmt == "docker",
        epoch=source_date_epoch(),
        labels=_pairs(labels, "--label", from_env=False),
    )
    obj = ctx.find_root().obj or {}
    with tempfile.TemporaryDirectory(prefix="ocirun-secrets-") as tmp:
        opts.secrets = dict(parse_secret(s, lambda: Path(tmp)) for s in secrets)
        Builder(Store.open(obj.get("root")), opts).build()
