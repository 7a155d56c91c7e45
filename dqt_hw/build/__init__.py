"""`python -m dqt_hw.build`: generate, synthesize, place and route, and report (docs/build.md).

The configuration (`BuildConfig`), the targets, the timing harness and the flow are separate
modules; `run_build` ties them together.
"""

from .config import BuildConfig, parse_args
from .flow import BuildError, run_build
from .targets import TARGETS

__all__ = ["BuildConfig", "BuildError", "TARGETS", "parse_args", "run_build"]
