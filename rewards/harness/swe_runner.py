"""Trusted start of the SWE test process: runs before any code of the repository.

``python3 -I -B swe_runner.py FD REPO ARGS_JSON PYTHONPATH``. ``-I`` ignores every ``PYTHON*``
variable, the user site and the current directory (a ``sitecustomize.py`` or ``.pth`` of the
patched tree is never loaded at start-up); ``-B`` writes no bytecode into the tree. Plug-in
auto-loading is off (entry points of an added ``*.dist-info`` never load): only the reporter and
plug-ins the task names with ``-p`` run. The repository root and the task's ``PYTHONPATH``
entries (relative to it) go on ``sys.path`` as ``python -m pytest`` would put them.
"""

import json
import os
import sys


def main():
    fd, repo, args, paths = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import swe_report

    sys.path.remove(here)
    for p in reversed([repo] + [os.path.join(repo, p) for p in paths.split(":") if p]):
        sys.path.insert(0, p)
    import pytest

    rc = pytest.main(args, plugins=[swe_report.Reporter(fd)])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(rc))


main()
