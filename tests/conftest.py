"""Suite-wide settings: reproducible property tests, and one progress line per test file."""

import collections
import os
import time

import pytest
from hypothesis import settings

# Timing deadlines would make results depend on machine load (CI shares 2 cores); in CI the
# examples are derandomized so a failure reproduces from the same commit.
settings.register_profile("dqt", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dqt")


class FileProgress:
    """Prints "tests/test_x.py: 12 passed in 3.1 s [ 40%]" when a file's last test finishes.

    Replaces the rows of dots of a quiet run, which under pytest-xdist do not say which file
    they belong to. Failures are still reported in full at the end (`-ra` lists them).
    """

    _RANK = {"passed": 0, "xpassed": 1, "skipped": 2, "xfailed": 3, "failed": 4, "error": 5}

    def __init__(self, reporter):
        self.reporter = reporter
        self.total = collections.Counter()       # tests per file
        self.outcomes = collections.defaultdict(collections.Counter)
        self.current = {}                        # nodeid -> worst outcome so far
        self.started = {}                        # file -> time of its first report
        self.finished = 0

    def _expect(self, nodeids):
        if not self.total:
            self.total.update(nodeid.split("::")[0] for nodeid in nodeids)

    def pytest_collection_finish(self, session):
        self._expect(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        self._expect(ids)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_report_teststatus(self, report, config):
        outcome = yield
        category, _letter, word = outcome.get_result()
        outcome.force_result((category, "", word))      # no dot: the file line says it

    def _outcome(self, report):
        if report.when == "call":
            if hasattr(report, "wasxfail"):
                return "xfailed" if report.skipped else "xpassed"
            return report.outcome
        if report.failed:
            return "error"
        return "skipped" if report.skipped else "passed"

    def pytest_runtest_logreport(self, report):
        path = report.nodeid.split("::")[0]
        self.started.setdefault(path, time.monotonic())
        outcome = self._outcome(report)
        worst = self.current.get(report.nodeid, "passed")
        if self._RANK[outcome] > self._RANK[worst]:
            worst = outcome
        self.current[report.nodeid] = worst
        if report.when != "teardown":
            return
        del self.current[report.nodeid]
        self.outcomes[path][worst] += 1
        self.finished += 1
        counts = self.outcomes[path]
        if sum(counts.values()) == self.total[path]:
            summary = ", ".join(f"{counts[key]} {key}" for key in self._RANK if counts[key])
            seconds = time.monotonic() - self.started[path]
            percent = 100 * self.finished // max(sum(self.total.values()), 1)
            markup = {"red": True} if counts["failed"] or counts["error"] else {"green": True}
            self.reporter.ensure_newline()
            self.reporter.write_line(f"{path}: {summary} in {seconds:.1f} s [{percent:3d}%]",
                                     **markup)


@pytest.hookimpl(trylast=True)          # after the terminal reporter exists
def pytest_configure(config):
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput") or config.option.verbose > 0:
        return
    reporter.showfspath = False
    reporter._show_progress_info = False     # the file lines carry the percentage
    config.pluginmanager.register(FileProgress(reporter), "file-progress")
