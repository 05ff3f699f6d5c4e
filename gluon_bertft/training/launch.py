"""``python -m gluon_bertft launch``: start a ps-lite scheduler, servers and workers; watch them.

Locally (the default) every process runs on this machine and talks over 127.0.0.1 only. With
``--hosts FILE`` the servers and workers are spread round-robin over the file's hosts through
``ssh`` (the same Python and working directory on every host), and the scheduler runs here at
``--scheduler-host``. Each process writes its own log. When one fails the launcher stops the
others and says which one and why; a launched process also ends by itself when the launcher
goes away (it holds the process's standard input).
"""
import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import time

from ..common import threads
from ..common.files import decoded_lines
from ..common.outputs import check_out_folder
from ..common.values import positive, positive_number
from .distributed import TIMEOUT_ENV, timeout_setting

# what every launched process runs: a scheduler or server serves inside `import mxnet`, a
# worker then runs the gluon_bertft command of its arguments
NODE_CODE = ('import os, sys, threading\n'
             'def watch_stdin():\n'
             '    while os.read(0, 4096):\n'
             '        pass\n'
             '    os._exit(1)\n'
             'threading.Thread(target=watch_stdin, daemon=True).start()\n'
             'import mxnet\n'
             'from gluon_bertft.cli import main\n'
             'sys.exit(main(sys.argv[1:]))\n')
FORWARD = ('PYTHONPATH', 'OMP_', 'MXNET_', 'PS_', 'GLUON_BERTFT_')  # passed on over ssh
LOOPBACK = ('127.0.0.1', 'localhost', '::1')
SSH = 'ssh -o BatchMode=yes -o ServerAliveInterval=15 -o ServerAliveCountMax=4'


class LaunchError(ValueError):
    """Launch arguments that cannot work (a port in use, no hosts, no command)."""


class Node:
    """One launched process: ``role`` (scheduler, server, worker), its number, host and log."""

    def __init__(self, role, index, host, log, proc):
        self.role, self.index, self.host, self.log, self.proc = role, index, host, log, proc

    def __str__(self):
        name = self.role if self.role == 'scheduler' else f'{self.role} {self.index}'
        return f'{name} (pid {self.proc.pid}{"" if self.host in LOOPBACK else " on " + self.host})'


def read_hosts(path):
    """Hosts of a host file: one a line; blank lines and ``#`` comments are skipped."""
    hosts = [line.split('#')[0].strip() for line in decoded_lines(
        path, hint='launch reads the host file as UTF-8: save it so')]
    hosts = [h for h in hosts if h]
    if not hosts:
        raise LaunchError(f'{path}: no hosts in the host file')
    return hosts


def check_port(host, port):
    """Raise :class:`LaunchError` when the scheduler could not listen on ``host:port``."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as zmq: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError as e:
            raise LaunchError(f'the scheduler cannot listen on {host}:{port} ({e.strerror}): '
                              'another run may hold the port; pick another with --port') from None


def node_env(role, host, args):
    """The ``DMLC_*`` (and thread) variables of one process."""
    env = dict(DMLC_ROLE=role, DMLC_PS_ROOT_URI=args.scheduler_host,
               DMLC_PS_ROOT_PORT=str(args.port), DMLC_NUM_SERVER=str(args.servers),
               DMLC_NUM_WORKER=str(args.workers), DMLC_NODE_HOST=host)
    if args.timeout:
        env[TIMEOUT_ENV] = str(args.timeout)
    if role == 'worker':
        count = args.threads or worker_threads(host, args)
        if count:
            env['OMP_NUM_THREADS'] = str(count)
    return env


def worker_threads(host, args):
    """OpenMP threads of a worker on this machine when ``gluon_bertft.common.threads`` chose the
    count (one per core): the cores shared among the workers here. ``None`` elsewhere: the
    host's own ``gluon_bertft`` picks its count."""
    if threads.configured is None or (args.hosts and host not in LOOPBACK):
        return None
    here = args.workers if not args.hosts else sum(
        1 for i in range(args.workers) if args.host_list[i % len(args.host_list)] in LOOPBACK)
    return max(1, threads.configured // here)


def start(role, index, host, args, command, log):
    """Start one process: the scheduler and, without a host file, every process here; the
    others on their host through ``args.ssh``. Returns its :class:`Node`."""
    env = node_env(role, host, args)
    argv = [sys.executable, '-c', NODE_CODE] + (command if role == 'worker' else [])
    if args.hosts is None or role == 'scheduler':
        full_env = {k: v for k, v in os.environ.items() if k != 'PORT'}  # ps-lite would bind $PORT
        kwargs = dict(env=dict(full_env, **env))
    else:
        env = dict({k: v for k, v in os.environ.items() if k.startswith(FORWARD)
                    and not (k == 'OMP_NUM_THREADS' and threads.configured)}, **env)
        remote = ' '.join([f'cd {shlex.quote(os.getcwd())} && exec env'] +
                          [shlex.quote(f'{k}={v}') for k, v in env.items()] +
                          [shlex.quote(a) for a in argv])
        argv, kwargs = shlex.split(args.ssh) + [host, remote], {}
    with open(log, 'wb') as f:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=f, stderr=subprocess.STDOUT,
                                **kwargs)
    return Node(role, index, host, log, proc)


def supervise(nodes, poll=0.2):
    """Wait until every worker has ended; returns the first node that failed, else ``None``.

    A failure is a non-zero exit (a scheduler or server ends with 0 only once the workers have
    said goodbye).
    """
    workers = [n for n in nodes if n.role == 'worker']
    while True:
        for node in nodes:
            if node.proc.poll():
                return node
        if all(w.proc.poll() is not None for w in workers):
            return None
        time.sleep(poll)


def stop(nodes, grace=5.0):
    """Terminate the nodes still running (then kill those still there after ``grace`` s)."""
    alive = [n for n in nodes if n.proc.poll() is None]
    for node in alive:
        node.proc.terminate()
    deadline = time.time() + grace
    for node in alive:
        try:
            node.proc.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()
    return alive


def tail(path, lines=8):
    with open(path, encoding='utf-8', errors='replace') as f:
        return ''.join(f.readlines()[-lines:])


def how_it_ended(code):
    return f'was killed by signal {-code}' if code < 0 else f'exited with code {code}'


def rank0_log(nodes):
    """The text of the log of the worker that got rank 0 (it says so), else ``''``."""
    for node in nodes:
        with open(node.log, encoding='utf-8', errors='replace') as f:
            text = f.read()
        if node.role == 'worker' and re.search('^worker 0 of ', text, re.M):
            return text
    return ''


def launch(args, command):
    """Run ``command`` (``finetune ...``) on ``args.workers`` workers; returns the exit code."""
    hosts = args.host_list = read_hosts(args.hosts) if args.hosts else ['127.0.0.1']
    if args.hosts and args.scheduler_host in LOOPBACK and set(hosts) - set(LOOPBACK):
        raise LaunchError(f'{args.hosts} names other machines: give --scheduler-host, the '
                          'address they reach this machine at')
    check_port(args.scheduler_host, args.port)
    os.makedirs(args.logs, exist_ok=True)
    plan = [('scheduler', 0, args.scheduler_host)]
    plan += [('server', i, hosts[i % len(hosts)]) for i in range(args.servers)]
    plan += [('worker', i, hosts[i % len(hosts)]) for i in range(args.workers)]
    nodes = []
    try:
        for role, index, host in plan:
            log = os.path.join(args.logs, f'{role}{index if role != "scheduler" else ""}.log')
            nodes.append(start(role, index, host, args, command, log))
        print(f'launch: scheduler at {args.scheduler_host}:{args.port}, {args.servers} server(s), '
              f'{args.workers} worker(s); logs in {args.logs}', flush=True)
        failed = supervise(nodes)
        if failed is None:
            servers_done = time.time() + 30
            while any(n.proc.poll() is None for n in nodes) and time.time() < servers_done:
                time.sleep(0.2)
    except KeyboardInterrupt:
        stop(nodes)
        print('launch: interrupted; stopped every process', file=sys.stderr)
        return 130
    finally:
        stopped = stop(nodes)
        for node in nodes:
            node.proc.stdin.close()
    if failed is not None:
        print(f'launch: error: {failed} {how_it_ended(failed.proc.returncode)}; stopped the '
              f'{len(stopped)} other process(es). The end of {failed.log}:\n'
              f'{tail(failed.log)}\nWith --checkpoint-every, the same command with --resume '
              'continues from the last checkpoint.', file=sys.stderr)
        return 1
    print(rank0_log(nodes), end='')
    print(f'launch: {args.workers} worker(s) done; logs in {args.logs}')
    return 0


def port(value):
    """A TCP port number for argparse: 1..65535."""
    n = int(value)
    if not 0 < n < 65536:
        raise argparse.ArgumentTypeError(f'{value}: a port is a number from 1 to 65535')
    return n


def add_arguments(parser):
    """The ``launch`` subcommand's options."""
    parser.add_argument('-n', '--workers', type=int, required=True, help='number of workers')
    parser.add_argument('-s', '--servers', type=int, default=1, help='number of servers (1)')
    parser.add_argument('--hosts', help='host file, one host a line: spread servers and workers '
                                        'over them with ssh (default: all on this machine)')
    parser.add_argument('--scheduler-host', default='127.0.0.1',
                        help='address of this machine that the hosts reach (with --hosts)')
    parser.add_argument('--port', type=port, default=9091, help="the scheduler's port (9091)")
    parser.add_argument('--logs', default=None,
                        help='folder for scheduler.log, server*.log, worker*.log '
                             '(default: runs/launch/DATE-TIME): created, or written into; '
                             'never an input')
    parser.add_argument('--timeout', type=positive_number, default=None,
                        help=f'seconds a worker waits for the scheduler, or for a training step, '
                             f'before it gives up (${TIMEOUT_ENV}; default 900)')
    parser.add_argument('--threads', type=positive, default=None,
                        help='OMP_NUM_THREADS of each worker (default: the cores of '
                             'this machine shared among its workers)')
    parser.add_argument('--ssh', default=SSH, help=f'remote shell for --hosts ("{SSH}")')
    parser.add_argument('argv', nargs='...', metavar='-- finetune ...',
                        help='the command every worker runs')


def main(args):
    """The ``launch`` subcommand: check the arguments, then :func:`launch`."""
    command = args.argv[1:] if args.argv[:1] == ['--'] else args.argv
    try:
        if command[:1] not in (['finetune'], ['pretrain']):
            raise LaunchError('give the command to run after --, e.g. '
                              '-- finetune --train data/snli_sample.jsonl --pretrained random (or -- pretrain ...)')
        if args.workers < 1 or args.servers < 1:
            raise LaunchError(f'-n {args.workers} -s {args.servers}: need at least one of each')
        if not args.timeout:
            timeout_setting()  # the workers' $GLUON_BERTFT_TIMEOUT, checked before any starts
        if args.logs is None:
            args.logs = os.path.join('runs', 'launch', time.strftime('%Y%m%d-%H%M%S'))
        check_out_folder(args.logs, '--logs', [('--hosts', args.hosts)])  # written into, not replaced
        return launch(args, command)
    except (ValueError, OSError) as e:  # LaunchError, or a host file that cannot be read
        print(f'launch: error: {e}', file=sys.stderr)
        return 2
