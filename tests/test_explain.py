"""Explanations (gluon_bertft.inference.attribution, gluon_bertft.inference.explain, ``explain`` CLI): completeness,
attention, padding, hybridization, every task, both vocabularies, and bad input."""
import json

import mxnet as mx
import numpy as onp
import pytest
from hf_tiny import write_tiny_hf_bert
from mxnet import np
from tiny_data import TINY_RUN, cli_run, once_per_task, refused, task_files

from gluon_bertft import FinetuneConfig, finetune
from gluon_bertft.common.errors import ConfigError, DataError
from gluon_bertft.inference import attribution, predict
from gluon_bertft.inference.explain import explain, explain_rows, group_words, special_ids

CPU = [mx.cpu()]
RAW = {'snli': dict(premise='A man plays a guitar.', hypothesis='A man plays music.'),
       'classify': dict(text='the film was a great story'),
       'tag': dict(text='anna flew to paris with peter'),
       'qa': dict(question='where does anna live ?', passage='anna lives in rome with peter .')}


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """A saved model of each task, trained a few epochs on the tiny data, made once."""
    def make(task, folder):
        config = FinetuneConfig(task=task, epochs=3, out=str(folder / 'run'), lr=1e-3,
                                **dict(TINY_RUN, **task_files(task, folder)))
        finetune(config, log=lambda *a: None)
        return str(folder / 'run' / 'model')
    return once_per_task(tmp_path_factory, make)


def loaded(models, task):
    return predict.load_model(models(task), CPU)


def within(entry):
    c = entry['completeness']
    gap = abs(sum(entry['attributions']) - (entry['score'] - entry['baseline_score']))
    return gap <= max(0.02 * abs(entry['score'] - entry['baseline_score']), 0.01) + 1e-5 and c['within']


@pytest.mark.slow
@pytest.mark.parametrize('task', ['snli', 'classify', 'tag', 'qa'])
def test_integrated_gradients_are_complete_on_a_trained_model(task, models):
    net, vocab, t = loaded(models, task)
    found = explain(net, vocab, t, **RAW[task])
    assert found['method'] == 'integrated gradients' and found['steps'] == 32
    assert len(found['targets']) == (2 if task == 'qa' else 1 if task != 'tag' else len(found['targets']))
    for entry in found['targets']:
        assert within(entry), entry['completeness']
        assert len(entry['attributions']) == len(found['tokens'])
        assert sum(entry['word_attributions']) == pytest.approx(sum(entry['attributions']), abs=1e-4)
        assert abs(entry['score'] - entry['baseline_score']) > 1e-3  # a check that can fail
    # <cls> and <sep> are in the baseline: their attributions are exactly 0
    specials = [p for p, tok in enumerate(found['tokens']) if tok in ('<cls>', '<sep>')]
    assert specials and all(found['targets'][0]['attributions'][p] == 0 for p in specials)


def test_left_riemann_would_not_be_complete_but_gauss_legendre_is(models):
    """Completeness is a property of the quadrature: 2 nodes are visibly worse than 32."""
    net, vocab, t = loaded(models, 'classify')
    gaps = [abs(explain(net, vocab, t, steps=s, **RAW['classify'])['targets'][0]['completeness']['gap'])
            for s in (1, 32)]
    assert gaps[1] < gaps[0]


def test_targets_per_task(models):
    net, vocab, t = loaded(models, 'classify')
    assert explain(net, vocab, t, label='neg', **RAW['classify'])['targets'][0]['target'] == 'neg'
    net, vocab, t = loaded(models, 'qa')
    found = explain(net, vocab, t, **RAW['qa'])
    assert [e['target'] for e in found['targets']] == ['answer start', 'answer end']
    start, end = (e['position'] for e in found['targets'])
    assert start <= end and found['tokens'][start] != '<sep>'
    net, vocab, t = loaded(models, 'tag')
    found = explain(net, vocab, t, word=3, **RAW['tag'])
    assert [e['target'].split(':')[0] for e in found['targets']] == ["word 3 'paris'"]
    assert found['words'][4] == 'paris'  # words[0] is <cls>


def test_attributions_are_zero_past_valid_len_and_rows_are_independent(models):
    net, vocab, t = loaded(models, 'classify')
    rows = t.raw_rows(dict(text='great')) + t.raw_rows(dict(text='the film was a dull story of one day'))
    together = explain_rows(net, vocab, t, rows)
    alone = explain_rows(net, vocab, t, rows[:1])[0]
    assert len(together[0]['tokens']) == 3
    ds = t.encode(rows, vocab)
    keep = special_ids(vocab)
    out = attribution.attribute(net, (ds.all_token_ids, ds.all_segments, ds.valid_lens),
                                attribution.baseline_tokens(ds.all_token_ids, keep), [(0, 0), (1, 1)])
    assert out['attributions'].shape == (2, int(ds.valid_lens.max()))
    assert onp.all(out['attributions'][0, 3:] == 0) and onp.any(out['attributions'][1, 3:] != 0)
    # padding the short row to the long one's width changes nothing
    onp.testing.assert_allclose(together[0]['targets'][0]['attributions'],
                                alone['targets'][0]['attributions'], atol=1e-4)


def test_attention_rows_sum_to_one_over_valid_keys_and_zero_on_padding(models):
    net, vocab, t = loaded(models, 'classify')
    ds = t.encode(t.raw_rows(dict(text='great')) + t.raw_rows(dict(text='the film was a dull story')),
                  vocab)
    weights = attribution.attention_weights(net, ds.all_token_ids, ds.all_segments, ds.valid_lens)
    layers, heads = len(net.encoder.blks), net.encoder.blks[0].attention.num_heads
    assert weights.shape == (layers, 2, heads, 8, 8)
    onp.testing.assert_allclose(weights[:, 0, :, :, :3].sum(-1), 1, atol=1e-5)
    assert onp.all(weights[:, 0, :, :, 3:] == 0)
    onp.testing.assert_allclose(weights[:, 1].sum(-1), 1, atol=1e-5)


def test_the_embedding_path_is_the_network(models):
    """``encode_embedded(embeddings(...))`` is the encoder, and ``head_scores`` is the head,
    for every task layer; the recomputed attention gives the attention block's output."""
    for task in ('classify', 'tag', 'qa'):
        net, vocab, t = loaded(models, task)
        ds = t.encode(t.raw_rows(RAW[task]), vocab)
        n = int(ds.valid_lens.max())
        X = (np.array(ds.all_token_ids[:, :n], dtype='int32'), np.array(ds.all_segments[:, :n], dtype='int32'),
             np.array(ds.valid_lens))
        encoded, weights = attribution.encode_embedded(
            net.encoder, attribution.embeddings(net.encoder, X[0], X[1]), X[2], attention=True)
        onp.testing.assert_allclose(encoded.asnumpy(), net.encoder(*X).asnumpy(), atol=1e-5)
        out = net(X)
        flat = onp.concatenate([o.asnumpy() for o in out], axis=1) if isinstance(out, (tuple, list)) \
            else out.asnumpy().reshape(out.shape[0], -1)
        onp.testing.assert_allclose(attribution.head_scores(net, encoded, X[1], X[2]).asnumpy(), flat,
                                    atol=1e-4)
        # weights x values through W_o is the first block's attention output
        mha = net.encoder.blks[0].attention
        x0 = attribution.embeddings(net.encoder, X[0], X[1])
        values = mha._split_heads(mx.nd, mha.W_v(x0))  # (heads, seq, d)
        mixed = np.matmul(weights[0].reshape(-1, n, n), values)
        mixed = mixed.reshape(1, -1, n, mixed.shape[-1]).transpose(0, 2, 1, 3).reshape(1, n, -1)
        onp.testing.assert_allclose(mha.W_o(mixed).asnumpy(), mha(x0, x0, x0, X[2]).asnumpy(), atol=1e-5)


def test_hybridized_and_imperative_give_the_same_attributions(models):
    path = models('qa')
    hybrid, vocab, t = predict.load_model(path, CPU)
    imperative, _, _ = predict.load_model(path, CPU)
    imperative.hybridize(active=False)
    a, b = (explain(net, vocab, t, **RAW['qa']) for net in (hybrid, imperative))
    for x, y in zip(a['targets'], b['targets']):
        onp.testing.assert_allclose(x['attributions'], y['attributions'], atol=1e-4)
    onp.testing.assert_allclose(a['attention']['weights'], b['attention']['weights'], atol=1e-4)


def test_gradient_x_input_is_one_backward_pass(models):
    net, vocab, t = loaded(models, 'classify')
    found = explain(net, vocab, t, method='gradxinput', **RAW['classify'])
    assert found['method'] == 'gradient x input' and found['steps'] == 1
    assert found['targets'][0]['completeness']['within'] is None  # no guarantee to check
    ig = explain(net, vocab, t, **RAW['classify'])
    assert found['targets'][0]['score'] == pytest.approx(ig['targets'][0]['score'], abs=1e-5)
    assert found['targets'][0]['attributions'] != ig['targets'][0]['attributions']


def test_wordpiece_model_explains_words_of_pieces(tmp_path):
    hf = tmp_path / 'hf'
    write_tiny_hf_bert(str(hf), seed=1)
    lines = ['sentence\tlabel'] + [f'the {w} was {"very good" if i % 2 else "bad"} .\t{i % 2}'
                                   for i, w in enumerate(['cats', 'dogs', 'movie', 'cat'] * 6)]
    (tmp_path / 'train.tsv').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    config = FinetuneConfig(task='classify', train=str(tmp_path / 'train.tsv'), pretrained=str(hf),
                            epochs=2, max_len=16, batch_size=8, devices='cpu', out=str(tmp_path / 'run'),
                            lr=1e-3)
    finetune(config, log=lambda *a: None)
    net, vocab, t = predict.load_model(str(tmp_path / 'run' / 'model'), CPU)
    found = explain(net, vocab, t, text='the cats sat unhappily')
    assert found['tokens'][0] == '[CLS]' and found['tokens'][-1] == '[SEP]'
    assert 'cats' in found['words'] and '##s' in found['tokens']
    assert found['word_tokens'][found['words'].index('cats')] == [2, 3]
    assert within(found['targets'][0])


def test_group_words():
    specials = {'[CLS]', '[SEP]'}
    assert group_words(['[CLS]', 'un', '##happy', 'cat', '##s', '[SEP]', '##s'], True, specials) == [
        ('[CLS]', [0]), ('unhappy', [1, 2]), ('cats', [3, 4]), ('[SEP]', [5]), ('##s', [6])]
    tokens = ['<cls>', 'u', '.', 's', '.', 'army', '<sep>']  # tagging: the sentence's own words
    assert group_words(tokens, False, set(), [1, 5], ['U.S.', 'army']) == [
        ('<cls>', [0]), ('U.S.', [1, 2, 3, 4]), ('army', [5]), ('<sep>', [6])]


def test_cli_writes_json_and_png_into_the_out_folder(models, tmp_path, capsys):
    out = tmp_path / 'deep' / 'why'
    code, err = cli_run(capsys, 'explain', '--model', models('tag'), '--text', RAW['tag']['text'],
                        '--out', out, '--layer', '0', '--head', '1')
    assert code == 0, err
    found = json.loads((out / 'explanation.json').read_text())
    assert {'tokens', 'prediction', 'method', 'steps', 'targets'} <= set(found)
    assert found['attention']['layer'] == 0 and found['attention']['head'] == 1
    assert (out / 'explanation.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert sorted(p.name for p in (tmp_path / 'deep').iterdir()) == ['why']
    assert sorted(p.name for p in out.iterdir()) == ['explanation.json', 'explanation.png']


@pytest.mark.parametrize('task, args, match', [
    ('classify', ['--text', '   '], 'give 1 text'),
    ('tag', ['--text', 'anna flew home', '--word', '3'], r'--word 3: out of range: the sentence has 3 words \(0 to 2\)'),
    ('tag', ['--text', 'anna flew home', '--word', '-1'], r'--word -1: out of range'),
    ('classify', ['--text', 'great', '--layer', '2'], r'--layer 2: the model has 2 layers \(0 to 1\)'),
    ('classify', ['--text', 'great', '--head', '5'], r'--head 5: the model has 2 heads'),
    ('classify', ['--text', 'great', '--head', 'all'], r"--head: 'all': give a head number or 'mean'"),
    ('classify', ['--text', 'great', '--label', 'happy'], r"--label 'happy': not a label of the model \('neg', 'pos'\)"),
    ('classify', ['--text', 'great', '--word', '0'], '--word: applies to tag, not to classify'),
    ('qa', ['--question', 'who ?', '--passage', ''], 'qa: give --question and --passage'),
    ('classify', ['--text', 'great', '--steps', '0'], '--steps'),
    ('classify', ['--text', 'great', '--steps', '5000'], '--steps 5000: give a whole number from 1 to 1024'),
    # an input the model's task does not take (each task's RAW_INPUTS), never silently ignored
    ('classify', ['--text', 'great', '--question', 'why?'], r'--question: classify does not take it \(it takes --text\)'),
    ('qa', ['--question', 'who?', '--passage', 'Anna.', '--premise', 'x'], r'--premise: qa does not take it'),
    ('tag', ['--text', 'anna flew', '--text-b', 'home'], r'--text-b: tag does not take it'),
    ('qa', ['--text', 'who?'], r'--text: qa does not take it \(it takes --question, --passage\)'),
    # text with nothing visible is empty text; a lone surrogate is not text (issue 24, kind 7)
    ('classify', ['--text', '\u200b\u2060 \u200b'], 'give 1 text'),
    ('classify', ['--text', '\x07\x1b'], 'give 1 text'),
    ('qa', ['--question', 'who?', '--passage', '\u200b\ufeff'], 'qa: give --question and --passage'),
    ('tag', ['--text', '\u200d'], 'tag: give a sentence'),
    ('classify', ['--text', 'a \ud800 film'], r'--text: not valid Unicode text \(a lone surrogate, U\+D800, at character 2\)'),
])
def test_cli_bad_input_gets_one_clear_error(task, args, match, models, tmp_path, capsys):
    refused(capsys, 'explain', '--model', models(task), '--out', tmp_path / 'x', *args, match=match)
    assert not list(tmp_path.iterdir())


def test_the_picture_leaves_a_notebooks_plotting_backend_alone(models, tmp_path):
    import matplotlib

    from gluon_bertft.inference.explain_plot import plot_explanation
    backend = matplotlib.get_backend()
    net, vocab, t = loaded(models, 'classify')
    plot_explanation(explain(net, vocab, t, **RAW['classify']), str(tmp_path / 'x.png'))
    assert matplotlib.get_backend() == backend and (tmp_path / 'x.png').stat().st_size > 0


def test_a_sentence_whose_first_word_does_not_fit_is_named(models):
    net, vocab, t = loaded(models, 'tag')
    t.config['tokenizer'] = 'basic'  # splits the dots: 40 pieces of one word, past max_len 32
    with pytest.raises(DataError, match='<input>:1: no word of the sentence fits within max_len 32'):
        explain(net, vocab, t, text='.' * 40 + ' anna')


def test_api_bad_options():
    with pytest.raises(ConfigError, match='--method shap'):
        explain_rows(None, None, None, [], method='shap')
