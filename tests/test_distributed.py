"""Distributed fine-tuning on MXNet's parameter-server kvstore, on loopback (127.0.0.1) only.

Every process gets a hard timeout and is killed at the end of its test.
"""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import mxnet as mx
import numpy as onp
import pytest
from conftest import ROOT, SAMPLE
from mxnet import autograd, gluon
from test_train import classifier
from tiny_data import classify_tsv, task_files, wiki_file

from gluon_bertft.data.batching import BatchIter, make_iter
from gluon_bertft.data.snli import SNLIBERTDataset, read_snli
from gluon_bertft.data.tokenize import build_vocab
from gluon_bertft.training import distributed
from gluon_bertft.training.trainer import make_trainer

TESTS = os.path.join(ROOT, 'tests')
FINETUNE = ['finetune', '--train', SAMPLE, '--pretrained', 'random', '--preset', 'bert.tiny',
            '--epochs', '2', '--batch-size', '64', '--max-examples', '300', '--max-len', '64',
            '--checkpoint-every', '3']


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def node_env(role=None, port=None, workers=1, **extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), **extra)
    env.pop('PORT', None)
    if role:
        env.update(DMLC_ROLE=role, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(port),
                   DMLC_NUM_SERVER='1', DMLC_NUM_WORKER=str(workers), DMLC_NODE_HOST='127.0.0.1')
    return env


@contextlib.contextmanager
def processes():
    """Popen arguments in, a list of started processes out; all killed at the end."""
    started = []

    def start(argv, env, **kwargs):
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, **kwargs)
        started.append(proc)
        return proc
    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # its own group: it and its children
            proc.communicate()


def launch(start, *args):
    return start([sys.executable, '-m', 'gluon_bertft', 'launch', *args], node_env())


def finish(proc, timeout):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def fingerprints(logs):
    text = ''.join(open(os.path.join(logs, f)).read() for f in sorted(os.listdir(logs)))
    return re.findall(r'^worker \d of 2: parameters (\w+)', text, re.M)


def test_shards_are_disjoint_equal_and_step_in_lockstep(sample, vocab):
    n = 1001
    for workers in (2, 3):
        shards = [distributed.shard((list(range(n)),), r, workers)[0] for r in range(workers)]
        assert {len(s) for s in shards} == {n // workers}
        assert len(set().union(*shards)) == workers * (n // workers)
    # every worker must take as many steps of the same size, epoch after epoch
    sizes = []
    for rank in range(2):
        batches = make_iter(SNLIBERTDataset(distributed.shard(sample, rank, 2), 64, vocab), 16,
                            True, seed=3)
        sizes.append([[len(y) for _, y in batches] for _ in range(2)])
    assert sizes[0] == sizes[1] and sizes[0][0] != sizes[0][1]
    with pytest.raises(ValueError, match='3 training examples for 4 workers: the shard of rank 3'):
        distributed.shard(([1, 2, 3],), 0, 4)
    assert distributed.local_batch_size(512, 4) == 128
    with pytest.raises(ValueError, match=r'batch_size=50: must be a multiple of the 4 workers \('):
        distributed.local_batch_size(50, 4)


def one_step(rank, num_workers, kvstore='device'):
    """One Adam step from rank ``rank``'s weights on its shard of 64 pairs (dropout off)."""
    data = read_snli(SAMPLE)
    vocab = build_vocab(data[0] + data[1])
    net = classifier(vocab, seed=rank)  # the workers start apart: rank 0's weights must win
    trainer = make_trainer(net, 1e-3, kvstore=kvstore)
    part = distributed.shard(tuple(c[:64] for c in data), rank, num_workers)
    (X, y), = BatchIter.from_dataset(SNLIBERTDataset(part, 64, vocab), 64, trim=False)
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y)
    loss.backward()
    trainer.step(y.shape[0])
    return net


def one_step_worker(out):
    """What each worker process of the test below runs."""
    kv, _ = distributed.connect('dist_sync', timeout=60)
    net = one_step(kv.rank, kv.num_workers, kv)
    net.save_parameters(os.path.join(out, f'rank{kv.rank}.params'))
    distributed.finish()


@pytest.mark.slow
def test_one_step_on_two_workers_equals_one_step_on_the_union(tmp_path):
    port = free_port()
    code = f'import test_distributed as t; t.one_step_worker({str(tmp_path)!r})'
    with processes() as start:
        for role in ('scheduler', 'server'):
            start([sys.executable, '-c', 'import mxnet'], node_env(role, port, 2))
        workers = [start([sys.executable, '-c', code], node_env('worker', port, 2))
                   for _ in range(2)]
        for proc in workers:
            code_, _, err = finish(proc, 120)
            assert code_ == 0, err
    single = one_step(0, 1)
    expected = {n: p.data().asnumpy() for n, p in single._collect_params_with_prefix().items()}
    ranks = [mx.nd.load(str(tmp_path / f'rank{r}.params')) for r in range(2)]
    for name, value in expected.items():
        assert onp.array_equal(ranks[0][name].asnumpy(), ranks[1][name].asnumpy()), name
        assert onp.abs(ranks[0][name].asnumpy() - value).max() < 1e-5, name


@pytest.fixture(scope='module')
def hosts_run(tmp_path_factory):
    """Two workers and a server on "hosts" (127.0.0.1 twice) through a stand-in for ssh."""
    tmp = tmp_path_factory.mktemp('hosts')
    (tmp / 'hosts').write_text('127.0.0.1\n# the same machine again\n127.0.0.1\n')
    ssh = tmp / 'ssh'
    ssh.write_text('#!/bin/sh\nshift\nexec sh -c "$1"\n')  # `ssh HOST COMMAND`, run here
    ssh.chmod(0o755)
    with processes() as start:
        proc = start([sys.executable, '-m', 'gluon_bertft', 'launch', '-n', '2', '--hosts',
                      str(tmp / 'hosts'), '--ssh', str(ssh), '--port', str(free_port()),
                      '--logs', str(tmp / 'logs'), '--', *FINETUNE, '--out', str(tmp / 'out')],
                     node_env(PS_VERBOSE='1'))
        code, out, err = finish(proc, 240)
    assert code == 0, err
    return tmp, out


@pytest.mark.slow
def test_two_workers_end_with_the_same_parameters_and_rank0_alone_writes(hosts_run):
    tmp, stdout = hosts_run
    prints = fingerprints(tmp / 'logs')
    assert len(prints) == 2 and prints[0] == prints[1]
    logs = ''.join((tmp / 'logs' / f).read_text() for f in os.listdir(tmp / 'logs'))
    # every node, here and "remote", bound to loopback only
    assert set(re.findall(r'Bind to role=\w+.*?ip=([\d.]+)', logs)) == {'127.0.0.1'}
    assert len(re.findall(r'Bind to role=', logs)) == 4
    assert 'worker 0 of 2 (dist_sync): 150 training examples, 32 of each global batch of 64' in stdout
    assert stdout.count('test acc') == 2 and logs.count('test acc') == 2  # rank 0's lines only
    assert sorted(os.listdir(tmp / 'out')) == ['checkpoint', 'model', 'result.json',
                                               'training_curve.png']
    result = json.loads((tmp / 'out' / 'result.json').read_text())
    assert len(result['test_acc']) == 2 and 'accuracy' in result['test']
    state = json.loads((tmp / 'out' / 'checkpoint' / 'state.json').read_text())
    assert (state['epoch'], state['batch'], state['run']['num_workers']) == (2, 0, 2)


def children(pid):
    with open(f'/proc/{pid}/task/{pid}/children') as f:
        return [int(p) for p in f.read().split()]


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_and_resume_ends_as_an_unbroken_run(tmp_path, hosts_run):
    out, port = tmp_path / 'out', str(free_port())
    with processes() as start:
        proc = launch(start, '-n', '2', '--port', port, '--logs', str(tmp_path / 'logs'), '--',
                      *FINETUNE, '--out', str(out))
        deadline = time.time() + 120
        while not (out / 'checkpoint' / 'state.json').exists() and time.time() < deadline:
            time.sleep(0.1)
        nodes = children(proc.pid)
        worker = next(p for p in nodes if b'finetune' in open(f'/proc/{p}/cmdline', 'rb').read())
        os.kill(worker, signal.SIGKILL)
        killed = time.time()
        code, _, err = finish(proc, 60)
        assert time.time() - killed < 10
        assert code == 1
        assert f'(pid {worker}) was killed by signal 9; stopped the 3 other process(es)' in err
        assert 'the same command with --resume' in err
        assert not any(os.path.exists(f'/proc/{p}') for p in nodes)  # all ended and reaped
        state = json.loads((out / 'checkpoint' / 'state.json').read_text())
        assert state['epoch'] < 2
        code, stdout, err = finish(launch(start, '-n', '2', '--port', port, '--logs',
                                          str(tmp_path / 'logs2'), '--', *FINETUNE, '--out',
                                          str(out), '--resume'), 240)
    assert code == 0, err
    assert f'resumed from {out / "checkpoint"}: {state["epoch"]} epochs and {state["batch"]}' \
           in stdout
    # dropout is reseeded at every checkpoint: the resumed run ends where the unbroken one did
    assert fingerprints(tmp_path / 'logs2') == fingerprints(hosts_run[0] / 'logs')


@pytest.mark.slow
def test_a_worker_that_cannot_join_gives_up_clearly(tmp_path):
    args = ['finetune', '--train', SAMPLE, '--pretrained', 'random', '--preset', 'bert.tiny',
            '--max-examples', '100', '--max-len', '64', '--batch-size', '32', '--epochs', '1',
            '--out', str(tmp_path / 'o')]
    nobody, mismatch = free_port(), free_port()
    with processes() as start:
        for role in ('scheduler', 'server'):  # they wait for two workers; one comes, saying 1
            start([sys.executable, '-c', 'import mxnet'], node_env(role, mismatch, 2))
        started = time.time()
        workers = [start([sys.executable, '-m', 'gluon_bertft', *args],
                         node_env('worker', port, 1, GLUON_BERTFT_TIMEOUT='3'))
                   for port in (nobody, mismatch)]
        for proc, port in zip(workers, (nobody, mismatch)):
            code, _, err = finish(proc, 60)
            assert code == 1
            assert (f'error: no answer within 3 s from the scheduler at 127.0.0.1:{port} '
                    'gathering 1 server(s) and 1 worker(s)') in err
            assert 'same DMLC_NUM_SERVER and DMLC_NUM_WORKER' in err
        assert time.time() - started < 40
    assert not (tmp_path / 'o').exists()


@pytest.mark.slow
def test_the_watchdog_ends_a_process_that_stops_beating():
    script = ('import time; from gluon_bertft.training.distributed import Watchdog\n'
              'watchdog = Watchdog(1.0, "no step for 1 s")\n'
              'for _ in range(20):\n'
              '    time.sleep(0.1)\n'
              '    watchdog.beat()\n'
              'print("alive after 2 s of beats", time.time(), flush=True)\n'
              'time.sleep(30)\n')
    with processes() as start:
        code, out, err = finish(start([sys.executable, '-c', script], node_env()), 60)
    ended = time.time()
    said, beaten = out.rsplit(' ', 1)
    assert (code, said, err.strip()) == (1, 'alive after 2 s of beats', 'error: no step for 1 s')
    assert ended - float(beaten) < 15  # ended ~1 s after the last beat, not after its 30 s sleep


@pytest.mark.slow
def test_an_empty_shard_stops_the_run_clearly(tmp_path):
    # qa: one question is a valid training set (one SNLI pair or table row has one label only)
    files = task_files('qa', tmp_path)
    with processes() as start:
        code, _, err = finish(launch(start, '-n', '2', '--port', str(free_port()), '--logs',
                                     str(tmp_path / 'logs'), '--', 'finetune', '--task', 'qa',
                                     '--train', files['train'], '--test', files['test'],
                                     '--stride', '8', '--max-query-len', '8',
                                     '--pretrained', 'random', '--preset', 'bert.tiny',
                                     '--max-len', '32', '--max-examples', '1',
                                     '--out', str(tmp_path / 'o')), 120)
    assert code == 1
    assert 'error: 1 training examples for 2 workers: the shard of rank 1 would be empty' in err
    assert not (tmp_path / 'o').exists()


@pytest.mark.slow
def test_launch_refuses_a_port_in_use_and_a_missing_command(tmp_path):
    with socket.socket() as busy, processes() as start:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = finish(launch(start, '-n', '2', '--port', str(port), '--', *FINETUNE), 60)
        assert code == 2
        assert f'launch: error: the scheduler cannot listen on 127.0.0.1:{port}' in err
        assert 'pick another with --port' in err
        code, _, err = finish(launch(start, '-n', '2', '--port', str(free_port())), 60)
        assert code == 2 and 'give the command to run after --, e.g. -- finetune' in err
        assert not (tmp_path / 'logs').exists()


@pytest.mark.slow
def test_launch_two_workers_finetune_classify(tmp_path):
    train = classify_tsv(tmp_path / 'train.tsv', 64)
    with processes() as start:
        code, stdout, err = finish(launch(
            start, '-n', '2', '--port', str(free_port()), '--logs', str(tmp_path / 'logs'), '--',
            'finetune', '--task', 'classify', '--train', train, '--pretrained', 'random',
            '--preset', 'bert.tiny', '--max-len', '32', '--batch-size', '16', '--epochs', '2',
            '--out', str(tmp_path / 'out')), 240)
    assert code == 0, err
    prints = fingerprints(tmp_path / 'logs')
    assert len(prints) == 2 and prints[0] == prints[1]
    # 58 training rows after the test split: 29 per worker, 8 of each global batch of 16
    assert 'worker 0 of 2 (dist_sync): 29 training examples, 8 of each global batch of 16' in stdout
    assert sorted(os.listdir(tmp_path / 'out')) == ['model', 'result.json', 'training_curve.png']
    config = json.loads((tmp_path / 'out' / 'model' / 'config.json').read_text())
    assert config['task'] == 'classify' and config['labels'] == ['neg', 'pos']
    result = json.loads((tmp_path / 'out' / 'result.json').read_text())
    assert len(result['test_acc']) == 2 and 'f1[pos]' in result['test']


@pytest.mark.slow
def test_launch_two_workers_pretrain(tmp_path):
    corpus = wiki_file(tmp_path / 'wiki.tokens')
    out = tmp_path / 'bert.zip'
    with processes() as start:
        code, stdout, err = finish(launch(
            start, '-n', '2', '--port', str(free_port()), '--logs', str(tmp_path / 'logs'), '--',
            'pretrain', '--corpus', corpus, '--preset', 'bert.tiny', '--max-len', '32',
            '--batch-size', '16', '--steps', '4', '--checkpoint-every', '2', '--out', str(out)), 240)
    assert code == 0, err
    prints = fingerprints(tmp_path / 'logs')
    assert len(prints) == 2 and prints[0] == prints[1]
    assert re.search(r'^worker 0 of 2 \(dist_sync\): \d+ sentence pairs, 8 of each global batch '
                     r'of 16$', stdout, re.M)
    assert sorted(os.listdir(tmp_path)) == ['bert.ckpt', 'bert.history.json', 'bert.loss.png',
                                            'bert.zip', 'logs', 'wiki.tokens']
    state = json.loads((tmp_path / 'bert.ckpt' / 'state.json').read_text())
    assert state['step'] == 4 and state['run']['num_workers'] == 2
    assert json.loads((tmp_path / 'bert.history.json').read_text())['step'] == 4
