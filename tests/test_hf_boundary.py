"""Bad input at the model boundary, kind 1 of issue 24: a Hugging Face folder that would give
a silently wrong model is refused by name, and valid folders (padded vocabularies, byte-order
marks) are taken: through ``finetune`` and, for saved models, ``predict``/``evaluate``/``explain``."""
import codecs
import json

import numpy as onp
import pytest
from hf_tiny import TINY_HF, VOCAB, write_tiny_hf_bert
from tiny_data import TINY_RUN, task_files

from gluon_bertft import FinetuneConfig, cli, finetune
from gluon_bertft.common.errors import PretrainedError
from gluon_bertft.data.wordpiece import WordPiece
from gluon_bertft.inference import predict
from gluon_bertft.inference.explain import explain
from gluon_bertft.models import hf

RUN = dict(TINY_RUN, pretrained=None, preset=None, epochs=1)


def run(tmp_path, folder, task='classify', **options):
    files = task_files(task, tmp_path)
    config = FinetuneConfig(task=task, **dict(RUN, pretrained=str(folder), **files, **options))
    return finetune(config, log=lambda *a: None)


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(tmp_path, capsys):
    folder = tmp_path / 'hf'
    write_tiny_hf_bert(str(folder), vocab_size=len(VOCAB) - 3)  # 33 tokens, 30 rows
    with pytest.raises(PretrainedError, match=r'hf: the tokenizer has 33 tokens but the '
                       r'embedding table 30 rows \(vocab_size\)'):
        run(tmp_path, folder)
    files = task_files('classify', tmp_path)
    code = cli.main(['finetune', '--task', 'classify', '--train', files['train'],
                     '--pretrained', str(folder), '--devices', 'cpu', '--out', str(tmp_path / 'o')])
    assert code == 2 and 'the tokenizer has 33 tokens' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


def test_a_padded_vocabulary_fine_tunes_and_its_model_is_used_afterwards(tmp_path):
    """vocab_size 40 > 33 tokens (padding rows): fine-tuning and every later command work."""
    folder = tmp_path / 'hf'
    write_tiny_hf_bert(str(folder), vocab_size=40)
    run(tmp_path, folder, out=str(tmp_path / 'run'))
    model = str(tmp_path / 'run' / 'model')
    net, vocab, task = predict.load_model(model)
    assert len(vocab) == 33 and net.encoder.token_embedding.weight.shape[0] == 40
    assert predict.predict(net, vocab, task, text='a fun movie')
    assert 'accuracy' in predict.evaluate_file(model, task_files('classify', tmp_path)['test'])
    assert explain(net, vocab, task, text='a fun movie', steps=2)['targets']


@pytest.mark.parametrize('task', ['snli', 'qa'])  # qa: the passage is segment 1
def test_one_token_type_with_text_pairs_is_refused(tmp_path, task):
    folder = tmp_path / 'hf'
    write_tiny_hf_bert(str(folder), type_vocab_size=1)
    with pytest.raises(PretrainedError, match=r'the model has 1 segment type\(s\) '
                       r'\(type_vocab_size\), but the input has text pairs'):
        run(tmp_path, folder, task=task)


def test_one_token_type_is_fine_for_single_texts_and_refuses_pairs_at_predict(tmp_path):
    folder = tmp_path / 'hf'
    write_tiny_hf_bert(str(folder), type_vocab_size=1)
    (tmp_path / 'regress.tsv').write_text(
        'sentence\tscore\n' + ''.join(f'{w} movie\t{i % 5}\n' for i, w in enumerate(VOCAB[5:] * 2)))
    config = FinetuneConfig(task='regress', train=str(tmp_path / 'regress.tsv'),
                            text_columns=('sentence',), out=str(tmp_path / 'run'),
                            **dict(RUN, pretrained=str(folder)))
    finetune(config, log=lambda *a: None)
    net, vocab, task = predict.load_model(str(tmp_path / 'run' / 'model'))
    assert predict.predict(net, vocab, task, text='a fun movie')
    with pytest.raises(PretrainedError, match='1 segment type'):
        predict.predict(net, vocab, task, text='a fun movie', text_b='the dog')


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_non_finite_weights_are_named_at_load(tmp_path, value):
    from safetensors.numpy import load_file, save_file
    folder = tmp_path / 'hf'
    write_tiny_hf_bert(str(folder))
    weights = load_file(str(folder / 'model.safetensors'))
    weights['encoder.layer.1.output.dense.weight'][0, :3] = value
    save_file(weights, str(folder / 'model.safetensors'))
    with pytest.raises(PretrainedError, match=r'model\.safetensors: non-finite values \(NaN or '
                       r'inf\) in 1 tensor\(s\): encoder\.layer\.1\.output\.dense\.weight \(3 of'):
        hf.load_hf_model(str(folder))


@pytest.mark.parametrize('key, value', [('do_lower_case', 'false'), ('tokenize_chinese_chars', 0),
                                        ('strip_accents', 'yes')])
def test_a_string_where_a_boolean_belongs_is_refused(tmp_path, key, value):
    folder = tmp_path / 'hf'
    write_tiny_hf_bert(str(folder))
    (folder / 'tokenizer_config.json').write_text(json.dumps({key: value}))
    with pytest.raises(PretrainedError, match=rf'tokenizer_config\.json: "{key}" is '
                       rf'{json.dumps(value)}; expected true or false'):
        WordPiece.from_folder(str(folder))


@pytest.mark.parametrize('name', ['config.json', 'vocab.txt', 'tokenizer.json'])
def test_a_utf8_byte_order_mark_is_taken(tmp_path, name):
    folder = tmp_path / 'hf'
    write_tiny_hf_bert(str(folder))
    plain = WordPiece.from_folder(str(folder))
    if name == 'vocab.txt':
        (folder / 'tokenizer.json').unlink()  # so that vocab.txt is read
        plain = WordPiece.from_folder(str(folder))
    path = folder / name
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    assert hf.read_hf_config(str(folder))['vocab_size'] == TINY_HF['vocab_size']
    marked = WordPiece.from_folder(str(folder))
    text = 'the happy dogs sat on a mat'
    assert marked.idx_to_token == plain.idx_to_token
    assert marked.tokenize(text) == plain.tokenize(text)
    assert onp.array_equal(marked.encode_texts([(text,)], 16)[0], plain.encode_texts([(text,)], 16)[0])
