"""python -m dqt_hw.build: Verilog, synthesis, place and route and the report (--help)."""

import signal
import sys

from .. import toolchain
from .board import board_requested, main as board_main
from .config import parse_args
from .flow import run_build


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # A terminated build unwinds like an interrupted one, so its staging folder is removed.
    signal.signal(signal.SIGTERM, _terminate)
    if board_requested(argv):                  # a board bitstream (dqt_hw/build/board.py)
        return board_main(argv)
    try:
        config = parse_args(argv)
        report = run_build(config, argv=argv)
    except KeyboardInterrupt:
        print("error: interrupted; no report was written", file=sys.stderr)
        return 130
    except (ValueError, TypeError, toolchain.ToolError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"report: {report} (machine-readable: {report.with_name('report.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
