"""The console script's exit: status codes, messages, flushed output and exit handlers survive
skipping the interpreter's teardown (cli/main.py's `main`); a running thread still gets waited for."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mnistkit.cli import main as cli_main

MNISTKIT = Path(sys.executable).with_name("mnistkit")


def _run(snippet: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120)


def test_the_installed_command_keeps_its_output_and_status():
    version = subprocess.run([MNISTKIT, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and "version" in version.stdout
    usage = subprocess.run([MNISTKIT, "predict", "--max-batch", "0"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "Invalid value for '--max-batch'" in usage.stderr


@pytest.mark.parametrize(
    "exit_with, status, stderr",
    [("None", 0, ""), ("0", 0, ""), ("3", 3, ""), ("'a message'", 1, "a message")],
)
def test_statuses_messages_buffered_output_and_exit_handlers(exit_with, status, stderr):
    snippet = (
        "import atexit, sys\n"
        "from mnistkit.cli import main as m\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "def fake():\n"
        "    sys.stdout.write('x' * 100000)  # still in the buffer when the process leaves\n"
        f"    sys.exit({exit_with})\n"
        "m.cli = fake\n"
        "m.main()\n"
    )
    done = _run(snippet)
    assert done.returncode == status, done.stderr
    assert done.stdout.startswith("x" * 100000) and done.stdout.endswith("exit handler ran\n")
    assert done.stderr.strip() == stderr


def test_a_running_thread_gets_the_ordinary_exit(monkeypatch):
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        monkeypatch.setattr(cli_main, "cli", lambda: sys.exit(4))
        with pytest.raises(SystemExit) as exit_info:
            cli_main.main()
        assert exit_info.value.code == 4
    finally:
        release.set()
        worker.join()
