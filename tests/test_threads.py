"""One OpenMP thread per physical core, unless the user or MXNet's import decided already."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from gluon_bertft.common import threads
from gluon_bertft.training import launch


def cpuinfo(tmp_path, cores, threads_per_core):
    blocks = [f'processor\t: {c * threads_per_core + t}\nphysical id\t: 0\ncore id\t\t: {c}\n'
              f'siblings\t: {cores * threads_per_core}\ncpu cores\t: {cores}\n'
              for c in range(cores) for t in range(threads_per_core)]
    path = tmp_path / 'cpuinfo'
    path.write_text('\n'.join(blocks))
    return str(path)


@pytest.mark.parametrize('cores, per_core', [(2, 1), (4, 2), (1, 1)])
def test_physical_cores_counts_cores_not_hardware_threads(tmp_path, monkeypatch, cores, per_core):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(cores * per_core)))
    assert threads.physical_cores(cpuinfo(tmp_path, cores, per_core)) == cores


def test_physical_cores_only_counts_allowed_processors(tmp_path, monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1})  # both threads of core 0
    assert threads.physical_cores(cpuinfo(tmp_path, 4, 2)) == 1


@pytest.mark.parametrize('environ, modules, expected', [
    ({}, {}, 'cores'),
    ({'GLUON_BERTFT_THREADS': '3'}, {}, '3'),
    ({'GLUON_BERTFT_THREADS': 'mxnet'}, {}, None),
    ({'OMP_NUM_THREADS': '1'}, {}, '1'),
    ({'MXNET_OMP_MAX_THREADS': '1'}, {}, None),
    ({}, {'mxnet': object()}, None),
])
def test_configure_respects_the_user_and_an_imported_mxnet(monkeypatch, environ, modules, expected):
    monkeypatch.setattr(threads, 'physical_cores', lambda: 2)
    monkeypatch.setattr(threads, 'set_loaded_mxnet', lambda count: count)  # run-time path: below
    monkeypatch.setattr(threads, 'configured', threads.configured)  # configure() sets it
    environ = dict(environ)
    threads.configure(environ, modules)
    assert environ.get('OMP_NUM_THREADS') == ('2' if expected == 'cores' else expected)


@pytest.mark.parametrize('value', ['lots', '²'])
def test_a_bad_setting_is_named_and_ignored(capsys, monkeypatch, value):
    monkeypatch.setattr(threads, 'configured', threads.configured)
    env = {'GLUON_BERTFT_THREADS': value}
    # at import an exception would come before the CLI could print one: warn, use the cores
    assert threads.configure(env, {}) == threads.physical_cores()
    assert f"GLUON_BERTFT_THREADS={value!r} is not cores" in capsys.readouterr().err


@pytest.mark.slow
def test_a_bad_setting_does_not_break_the_cli():
    env = dict(os.environ, GLUON_BERTFT_THREADS='abc')
    env.pop('OMP_NUM_THREADS', None)
    done = subprocess.run([sys.executable, '-m', 'gluon_bertft', 'predict', '--model', 'nowhere'],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and 'Traceback' not in done.stderr, done.stderr


@pytest.mark.slow
def test_importing_the_package_first_sets_mxnets_threads():
    env = {k: v for k, v in os.environ.items()
           if k not in ('OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS', threads.ENV)}
    code = ('import gluon_bertft, os; from gluon_bertft import threads; '
            'print(os.environ.get("OMP_NUM_THREADS"), threads.physical_cores())')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(env, PYTHONPATH=ROOT), check=True).stdout.split()
    assert out[0] == out[1] != 'None'


BUSY = '''
import os, sys
{first}
import gluon_bertft
from gluon_bertft import threads
from mxnet import np, npx
def ticks():
    out = {{}}
    for t in os.listdir('/proc/self/task'):
        f = open(f'/proc/self/task/{{t}}/stat').read().split(')')[-1].split()
        out[t] = int(f[11]) + int(f[12])
    return out
a = np.ones((2000, 2000)); a.wait_to_read()
before = ticks()
for _ in range(20):
    c = npx.fully_connected(a, a, no_bias=True, num_hidden=2000)
c.wait_to_read()
spent = sorted((t - before.get(k, 0) for k, t in ticks().items()), reverse=True)
print(threads.configured, threads.physical_cores(), sum(t > 0.3 * spent[0] for t in spent))
'''


@pytest.mark.slow
@pytest.mark.parametrize('first, fixed', [
    ('', True),                                                   # gluon_bertft first
    ('import mxnet', True),                                       # mxnet first, nothing run yet
    ('from d2l import mxnet as d2l', True),
    ('from mxnet import np; np.ones(2).wait_to_read()', False),   # MXNet already ran an operator
])
def test_either_import_order_runs_one_thread_per_core_or_warns_once(first, fixed):
    env = {k: v for k, v in os.environ.items()
           if k not in ('OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS', threads.ENV)}
    done = subprocess.run([sys.executable, '-c', BUSY.format(first=first)], capture_output=True,
                          text=True, cwd=ROOT, env=dict(env, PYTHONPATH=ROOT), timeout=300)
    assert done.returncode == 0, done.stderr
    configured, cores, busy = done.stdout.split()
    if cores == 'None' or int(cores) < 2:
        pytest.skip('one core: nothing to tell apart')
    warnings = [line for line in done.stderr.splitlines() if line.startswith('warning:')]
    if fixed:
        assert configured == cores and int(busy) == int(cores) and not warnings, done.stderr
    else:
        assert configured == 'None' and int(busy) == 1, done.stdout
        assert len(warnings) == 1 and 'Import gluon_bertft before mxnet' in warnings[0] and \
            f'OMP_NUM_THREADS={cores}' in warnings[0], done.stderr


def test_local_workers_share_the_cores(monkeypatch):
    monkeypatch.setattr(threads, 'configured', 4)
    class Args:
        hosts, threads, workers = None, None, 2
    assert launch.worker_threads('127.0.0.1', Args) == 2
    Args.workers = 8
    assert launch.worker_threads('127.0.0.1', Args) == 1
    Args.hosts, Args.host_list, Args.workers = 'hosts.txt', ['10.0.0.2', '127.0.0.1'], 4
    assert launch.worker_threads('127.0.0.1', Args) == 2  # workers 1 and 3 run here
    assert launch.worker_threads('10.0.0.2', Args) is None  # that host picks its own
    monkeypatch.setattr(threads, 'configured', None)  # the user set OMP_NUM_THREADS: leave it
    assert launch.worker_threads('127.0.0.1', Args) is None


@pytest.mark.parametrize('environ, loaded, expected', [
    ({}, False, str(threads.SPIN)),
    ({'GLUON_BERTFT_SPIN': '500'}, False, '500'),
    ({'GLUON_BERTFT_SPIN': 'libgomp'}, False, None),
    ({'GOMP_SPINCOUNT': '7'}, False, '7'),
    ({'OMP_WAIT_POLICY': 'PASSIVE'}, False, None),
    ({}, True, None),                      # libgomp read its settings already
    ({'GLUON_BERTFT_SPIN': '²'}, False, str(threads.SPIN)),  # not a number: warned, the default
])
def test_spin_count_is_set_before_libgomp_loads_unless_the_user_chose(monkeypatch, environ, loaded,
                                                                       expected):
    monkeypatch.setattr(threads, 'libgomp_loaded', lambda: loaded)
    environ = dict(environ)
    threads.configure_spin(environ)
    assert environ.get('GOMP_SPINCOUNT') == expected


@pytest.mark.slow
def test_a_fresh_interpreter_gets_the_spin_count_and_libgomp_is_detected(tmp_path):
    maps = tmp_path / 'maps'
    maps.write_text('7f00-7f01 r-xp 0 08:01 1 /lib/x86_64-linux-gnu/libgomp.so.1\n')
    assert threads.libgomp_loaded(str(maps)) and not threads.libgomp_loaded(str(tmp_path / 'none'))
    env = {k: v for k, v in os.environ.items()
           if k not in ('GOMP_SPINCOUNT', 'OMP_WAIT_POLICY', threads.SPIN_ENV)}
    code = 'import os, gluon_bertft; print(os.environ.get("GOMP_SPINCOUNT"))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(env, PYTHONPATH=ROOT), check=True).stdout.split()
    assert out == [str(threads.SPIN)]
