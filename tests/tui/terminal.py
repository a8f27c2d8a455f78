"""``clusterkit tui`` in a real pseudo-terminal: what it costs idle, and how it quits.

Used by the terminal test and by ``benchmarks/bench_tui_idle.py`` (a longer window).
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass

import psutil

ALT_SCREEN_OFF = b"\x1b[?1049l"
CURSOR_SHOWN = b"\x1b[?25h"


@dataclass
class TerminalRun:
    cpu_percent_of_core: float  # the console's CPU time over the idle window / the window
    idle_s: float
    exit_code: int | None
    quit_s: float  # from pressing q to the process having exited
    output: bytes

    @property
    def restored_terminal(self) -> bool:
        """Left the alternate screen and showed the cursor again after its last drawing."""
        tail = self.output[self.output.rfind(ALT_SCREEN_OFF) :]
        return ALT_SCREEN_OFF in self.output and CURSOR_SHOWN in tail


def run_console(
    env: dict[str, str],
    *,
    idle_s: float,
    keys: bytes = b"",
    settle_s: float = 5.0,
    size: tuple[int, int] = (24, 80),
) -> TerminalRun:
    """Start the console in a ``size`` (rows, cols) terminal, let it settle, type ``keys``,
    measure its CPU over ``idle_s`` seconds with nothing pressed, then press q."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterkit.cli", "tui"],
        stdin=follower, stdout=follower, stderr=follower, env={**env, "TERM": "xterm-256color"},
        start_new_session=True, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    output = bytearray()
    stop = threading.Event()

    def drain() -> None:  # a terminal that is not read from blocks its writer
        while not stop.is_set():
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                output.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        time.sleep(settle_s)
        if keys:
            os.write(leader, keys)
            time.sleep(2.0)
        console = psutil.Process(proc.pid)
        before = console.cpu_times()
        t0 = time.monotonic()
        time.sleep(idle_s)
        after = console.cpu_times()
        window = time.monotonic() - t0
        used = (after.user - before.user) + (after.system - before.system)
        pressed = time.monotonic()
        os.write(leader, b"q")
        try:
            code: int | None = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
        quit_s = time.monotonic() - pressed
        time.sleep(0.3)  # the last bytes it wrote
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop.set()
        reader.join(timeout=2)
        os.close(leader)
    return TerminalRun(100.0 * used / window, window, code, quit_s, bytes(output))
