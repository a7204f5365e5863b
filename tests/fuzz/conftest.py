"""Hypothesis settings for the fuzz tests.

CI runs the "ci" profile: derandomized (a fixed seed, so a failure reproduces) with a
bounded number of examples. Run longer with another profile, e.g.

    OCIRUN_FUZZ_PROFILE=long python -m pytest tests/fuzz            # 20,000 examples each, random
    OCIRUN_FUZZ_PROFILE=long OCIRUN_FUZZ_EXAMPLES=200000 python -m pytest tests/fuzz -x
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, max_examples=100, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long", derandomize=False, max_examples=int(os.environ.get("OCIRUN_FUZZ_EXAMPLES", "20000")),
    deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("OCIRUN_FUZZ_PROFILE", "ci"))
