"""The optional compiled fast path of the engine (ocirun/engine/_fastpath.c).

Built by `pip install .` when a C compiler and Python's headers are there (Debian:
gcc python3-dev); without them the install goes on and the pure-Python engine runs.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A failed compile leaves the extension out instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 (any compiler failure)
            print(f"ocirun: fast path not built ({exc}): the pure-Python engine will run")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"ocirun: fast path not built ({exc}): the pure-Python engine will run")


setup(
    ext_modules=[Extension("ocirun.engine._fastpath", ["ocirun/engine/_fastpath.c"], optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
