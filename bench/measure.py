"""Wall, CPU and peak memory of a child process, for the benchmarks.

Peak memory is the child's VmHWM (/proc/<pid>/status), read while it runs: getrusage's ru_maxrss
would carry over the benchmark process's own peak, which Linux keeps across fork + exec, whereas
VmHWM starts afresh with the new program.
"""
import os
import subprocess
import threading
import time
from pathlib import Path

TICKS = os.sysconf('SC_CLK_TCK')


def peak_mib(pid):
    """The process's peak RSS so far (VmHWM), MiB; 0 once it is gone."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmHWM:'):
                return round(int(line.split()[1]) / 1024)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pid):
    """CPU seconds of every thread of a running process."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_measured(arguments, env, on_line=None, interval=0.1):
    """Run a command; (wall s, CPU s, peak MiB, output lines). `on_line(line, pid)` sees each
    output line (stdout and stderr) as it arrives."""
    started = time.perf_counter()
    process = subprocess.Popen(arguments, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    peak = [0]
    finished = threading.Event()

    def watch():
        while not finished.is_set():
            peak[0] = max(peak[0], peak_mib(process.pid))
            finished.wait(interval)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if on_line is not None:
            on_line(line, process.pid)
    peak[0] = max(peak[0], peak_mib(process.pid))  # the zombie keeps /proc until it is waited for
    _, status, usage = os.wait4(process.pid, 0)
    finished.set()
    watcher.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f'{" ".join(map(str, arguments[:4]))} failed:\n{"".join(lines[-40:])}')
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, peak[0], lines
