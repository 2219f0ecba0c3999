"""The summary under a full disk: the write fails loudly and leaves the previous summary whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_CHILD = """
import resource, signal, sys
from mnistkit.pipeline.accounting import Summary
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
summary = Summary("in", "out", "model", "text", 3, 2, {"bad_key": 1}, 0.5, {"x" * 500: "y"})
try:
    summary.write(sys.argv[1])
except OSError as exc:
    print("OSError", exc.errno)
"""


def test_a_full_disk_during_the_summary_write_leaves_the_old_summary_and_no_temp_file(tmp_path):
    path = tmp_path / "out-summary.json"
    path.write_text('{"rows_read": 1}\n')
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, env=os.environ, timeout=120
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["OSError", "27"]  # EFBIG
    assert json.loads(path.read_text()) == {"rows_read": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out-summary.json"]
