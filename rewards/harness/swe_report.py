"""pytest plug-in of the SWE verifier: one JSON line per finished test on a pipe the supervisor
opened before any code of the repository ran.

Lines: ``{"test": nodeid, "phases": {"setup": outcome, "call": outcome, "teardown": outcome}}``
per test, ``{"collect_error": nodeid}`` per failed collector, ``{"done": exit status}`` at the
end. The supervisor trusts these only together with the canaries, the exit status and the seal
of the test tree (see ``rewards/swe.py``): code under test shares this process.
"""

import json
import os

import pytest


class Reporter:
    def __init__(self, fd):
        self.fd = fd
        self.phases = {}

    def send(self, obj):
        os.write(self.fd, (json.dumps(obj) + "\n").encode())

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report):
        self.phases.setdefault(report.nodeid, {})[report.when] = report.outcome

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logfinish(self, nodeid, location):
        self.send({"test": nodeid, "phases": self.phases.pop(nodeid, {})})

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectreport(self, report):
        if report.failed:
            self.send({"collect_error": report.nodeid})

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        self.send({"done": int(exitstatus)})
