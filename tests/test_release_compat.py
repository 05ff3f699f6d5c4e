"""Model folders and checkpoints written by release 0.2 (commit 1166cbc, before the layout and
the one loop) load, predict and resume as 0.2 itself does.

``fixtures/release_0.2`` was written by 0.2 (the script is in its README): a WordPiece model
fine-tuned with BERT's recipe (its checkpoint pickles ``gluon_bertft.optimizer.FusedAdam``)
and a book-format model, each stopped after epoch 1 of 2 with a checkpoint; beside them what
0.2 predicted for ``train.tsv`` and the parameters 0.2 reached when it resumed epoch 2.
"""
import json
import shutil

import mxnet as mx
import numpy as onp
import pytest
from conftest import ROOT

from gluon_bertft import FinetuneConfig, PretrainedError, finetune
from gluon_bertft.inference.predict import load_model, predict_file
from gluon_bertft.models import build

FIXTURE = f'{ROOT}/tests/fixtures/release_0.2'
RUNS = dict(wordpiece_run=dict(pretrained='hf', weight_decay=0.01, clip_grad=1.0),
            book_run=dict(pretrained='random', preset='test-small'))


@pytest.fixture
def release(tmp_path, monkeypatch):
    folder = tmp_path / 'release'
    shutil.copytree(FIXTURE, folder)
    monkeypatch.chdir(folder)  # the runs name their files relative to it, as 0.2 wrote them
    monkeypatch.setitem(build.ALL_PRESETS, 'test-small', dict(
        num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_blks=1, max_len=32))
    return folder


@pytest.mark.parametrize('run', list(RUNS))
def test_a_release_model_predicts_as_the_release_did(release, run):
    load_model(f'{run}/model', [mx.cpu()])
    predict_file(f'{run}/model', 'train.tsv', 'now.jsonl', log=lambda *a: None)
    now = [json.loads(line) for line in open('now.jsonl')]
    then = [json.loads(line) for line in open(f'{run}.predictions.jsonl')]
    assert [r['label'] for r in now] == [r['label'] for r in then]
    for a, b in zip(now, then):
        # 6-decimal probabilities: one rounding step apart where the CPU's kernels differ
        assert a['probabilities'] == pytest.approx(b['probabilities'], abs=2e-6)


@pytest.mark.parametrize('run', list(RUNS))
def test_a_release_checkpoint_resumes_to_the_releases_parameters(release, run):
    if run == 'wordpiece_run':  # the optimizer pickled under the module path of 0.2
        assert b'gluon_bertft.optimizer' in (release / run / 'checkpoint' / 'trainer.states').read_bytes()
    config = lambda trusted: FinetuneConfig(
        task='classify', train='train.tsv', max_len=32, batch_size=16, epochs=2, lr=1e-3,
        devices='cpu', checkpoint_every=2, out=run, resume=True, trust_checkpoint=trusted,
        **RUNS[run])
    with pytest.raises(PretrainedError, match='its optimizer state is a pickle'):
        finetune(config(False), log=lambda *a: None)  # 0.2 pickled it: trust is asked for
    lines = []
    net, _, result = finetune(config(True), log=lines.append)
    assert f'resumed from {run}/checkpoint: 1 epochs and 0 batches done' in lines
    expected = mx.nd.load(f'{run}.resumed.params')
    got = {n: p.data().asnumpy() for n, p in net._collect_params_with_prefix().items()}
    assert set(got) == set(expected)
    for name, value in expected.items():
        # 1e-5: the fixture was written on an AVX-512 CPU; oneDNN/OpenBLAS pick other kernels
        # (another summation order) on AVX2-only CPUs, 4.5e-6 apart after 2 steps (measured)
        onp.testing.assert_allclose(got[name], value.asnumpy(), rtol=0, atol=1e-5, err_msg=name)
    assert len(result['train_loss']) == 2
