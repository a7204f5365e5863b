"""The optional compiled fast path of the engine (ocirun/engine/_fastpath.c, _fakeroot.c).

Built by `pip install .` when a C compiler and Python's headers are there (Debian:
gcc python3-dev); without them (optional=True) the install goes on with a warning
and the pure-Python engine runs (`ocirun -v` says so).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ocirun.engine._fastpath", ["ocirun/engine/_fastpath.c", "ocirun/engine/_fakeroot.c"],
                             depends=["ocirun/engine/_fastpath.h", "ocirun/engine/_fastexec.c", "ocirun/engine/_fastdirs.c",
                                      "ocirun/engine/_fasttree.c", "ocirun/engine/_fastscript.c"], optional=True)])
