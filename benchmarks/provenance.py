"""Where and when a benchmark ran: the header of every ``benchmarks/results/*.json``."""
import datetime
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(*args):
    """``git ARGS`` in the checkout, stripped stdout."""
    return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def uptime():
    """The load averages, as ``uptime`` prints them."""
    return subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()


def header(script):
    """``date``, ``command``, ``commit``, ``dirty`` (uncommitted package changes) and
    ``uptime_before`` of a run of ``benchmarks/SCRIPT`` with this process's arguments."""
    return dict(date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                command=' '.join(['python', f'benchmarks/{script}'] + sys.argv[1:]),
                commit=git('rev-parse', '--short', 'HEAD'),
                dirty=bool(git('status', '--porcelain', 'gluon_bertft')), uptime_before=uptime())
