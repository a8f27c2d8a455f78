import sys
import time

import psutil

from clusterkit.exec import processes as daemons


def test_stop_all_ends_the_whole_tree_even_when_the_root_ignores_sigterm(tmp_path):
    # the root ignores SIGTERM and has a grandchild: both must be gone afterwards
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "time.sleep(600)\n"
    )
    d = daemons.spawn(
        "t", [sys.executable, "-c", script], env={}, log=tmp_path / "t.log", cwd=tmp_path
    )
    assert daemons.wait_until(lambda: len(psutil.Process(d.pid).children()) == 1, timeout_s=10)
    child = psutil.Process(d.pid).children()[0]
    started = time.monotonic()
    pids = daemons.stop_all([d], grace_s=0.5)
    assert set(pids) == {d.pid, child.pid}
    assert not daemons.is_alive(d)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert time.monotonic() - started < 5


def test_a_reused_pid_is_not_ours(tmp_path):
    d = daemons.spawn(
        "t", [sys.executable, "-c", "pass"], env={}, log=tmp_path / "t.log", cwd=tmp_path
    )
    fake = daemons.Daemon(d.name, d.pid, d.create_time - 100, d.argv, d.log)
    assert daemons.process_of(fake) is None
    assert daemons.wait_until(lambda: not daemons.is_alive(d), timeout_s=10)
    assert daemons.stop_all([d]) == []
