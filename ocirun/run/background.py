"""`python -m ocirun.run.background ROOT ID`: the detached runner of `run -d` and `start`.

Started by runner.start_detached in its own session with stdout/stderr on the
container's log; it runs the container in the foreground of that session.
"""

from __future__ import annotations

import sys

from ocirun.errors import OcirunError
from ocirun.run.containers import ContainerStore
from ocirun.run.runner import start_container


def main(argv: list[str]) -> int:
    root, cid = argv
    cstore = ContainerStore(root)
    try:
        return start_container(cstore, cstore.get(cid))
    except OcirunError as exc:
        print(f"ocirun: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
