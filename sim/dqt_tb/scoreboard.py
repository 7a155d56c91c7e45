"""In-order scoreboard: DUT integers against `dqt_hw.golden` integers, exact equality.

The testbench computes each expected transaction with the golden model when it queues the
stimulus (`expect`), and the output monitor hands every DUT transaction to `check`. Each
compared integer counts as one operation; a mismatch is counted per integer, the first few
are logged with their context, and `finish` fails the test on any mismatch, on a missing
transaction and on an unexpected one.
"""

from collections import deque

import numpy as np

__all__ = ["Scoreboard", "ScoreboardError"]


class ScoreboardError(AssertionError):
    """The DUT disagreed with the golden model (an `AssertionError`, so cocotb fails the test)."""


class Scoreboard:
    """Compare DUT transactions with golden-model transactions, in order.

    `log` is a `logging.Logger`; `max_reports` bounds how many mismatching transactions are
    logged in full; a `required` scoreboard fails when it checked nothing at all.
    """

    def __init__(self, name, log, *, max_reports=10, required=True):
        self.name = name
        self.required = required
        self.log = log
        self.max_reports = max_reports
        self._expected = deque()
        self.operations = 0
        self.mismatches = 0
        self.transactions = 0
        self.unexpected = 0
        self._reported = 0

    def expect(self, values, context=None):
        """Queue the golden result of one transaction: an int array (or int), and its
        stimulus for a mismatch report: a string, or a dict of arrays shaped like `values`
        (then the report shows each field at the mismatching positions)."""
        self._expected.append((np.asarray(values, dtype=np.int64), context))

    @property
    def pending(self):
        """Expected transactions the DUT has not produced yet."""
        return len(self._expected)

    def check(self, actual):
        """Compare one DUT transaction (int array or int) with the oldest expected one."""
        actual = np.asarray(actual, dtype=np.int64)
        if not self._expected:
            self.unexpected += 1
            self.log.error("%s: unexpected DUT transaction %s (nothing expected)",
                           self.name, actual.tolist())
            return
        expected, context = self._expected.popleft()
        self.transactions += 1
        self.operations += expected.size
        if actual.shape != expected.shape:
            self.mismatches += expected.size
            self._report(actual, expected, context, "shape differs")
            return
        wrong = int(np.count_nonzero(actual != expected))
        if wrong:
            self.mismatches += wrong
            self._report(actual, expected, context, f"{wrong} of {expected.size} differ")

    def _report(self, actual, expected, context, what):
        if self._reported >= self.max_reports:
            return
        self._reported += 1
        if actual.shape != expected.shape or expected.size <= 16:
            detail = f"DUT {actual.tolist()}, golden {expected.tolist()}, stimulus {context}"
        else:
            positions = np.argwhere(actual != expected)[:8]
            lines = []
            for position in (tuple(int(i) for i in row) for row in positions):
                stimulus = context
                if isinstance(context, dict):
                    stimulus = ", ".join(f"{name}={np.asarray(field)[position]}"
                                         for name, field in context.items())
                lines.append(f"at {position}: DUT {actual[position]}, golden "
                             f"{expected[position]} ({stimulus})")
            detail = "\n  ".join(lines)
        self.log.error("%s: mismatch in transaction %d (%s)\n  %s", self.name,
                       self.transactions - 1, what, detail)

    def finish(self):
        """Fail (raise `ScoreboardError`) unless every transaction matched and none is missing
        or extra. Returns the number of compared operations."""
        problems = []
        if self.mismatches:
            problems.append(f"{self.mismatches} mismatching integers")
        if self._expected:
            problems.append(f"{len(self._expected)} expected transactions never came out")
        if self.unexpected:
            problems.append(f"{self.unexpected} unexpected transactions")
        if self.required and not self.operations:
            problems.append("no operation was checked")
        summary = (f"{self.name}: {self.operations} operations in {self.transactions} "
                   f"transactions, {self.mismatches} mismatches")
        if problems:
            raise ScoreboardError(f"{summary}; " + "; ".join(problems))
        self.log.info("%s", summary)
        return self.operations
