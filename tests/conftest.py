"""Suite-wide settings: property tests are reproducible and never time-sensitive."""

import os

from hypothesis import settings

# Timing deadlines would make results depend on machine load (CI shares 2 cores); in CI the
# examples are derandomized so a failure reproduces from the same commit.
settings.register_profile("dqt", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dqt")
