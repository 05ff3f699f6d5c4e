"""Bad and odd input files (issue 13, kinds 1-4): JSON values of the wrong type, encodings,
sizes, corrupt model folders and checkpoints. Each is one short error naming the file, line
or field (exit code 2, no traceback, nothing written), or the right result for valid input.
Kinds 5-8 (options, splits, valid input, outputs): tests/test_bad_runs.py."""
import codecs
import json
import os
import shutil

import mxnet as mx
import pytest
from conftest import SAMPLE, TINY, tiny_bert
from tiny_data import (TINY_ARGS, classify_tsv, cli_run, refused, snli_lines, squad_json,
                       untrained_model, wiki_file)

from gluon_bertft.config import FinetuneConfig
from gluon_bertft.data import conll, snli, squad, tsv
from gluon_bertft.tasks import task_of_config
from gluon_bertft.models import pretrained

BOM = codecs.BOM_UTF8
TOKENS = ['<cls>', '<mask>', '<pad>', '<sep>', '<unk>'] + f'a film fine awful {" ".join(map(str, range(20)))}'.split()


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode('utf-8'))
    return str(path)


def finetune(capsys, tmp_path, task, train, *args, match, model=TINY_ARGS[:4]):
    """A refused tiny fine-tuning run; nothing may be written to its --out."""
    out = tmp_path / 'run'
    line = refused(capsys, 'finetune', '--task', task, '--train', train, *model, *TINY_ARGS[4:],
                   '--out', out, *args, match=match)
    assert not os.path.exists(out)
    return line


# --- 1. JSON values of the wrong type ---

ROWS = ''.join(json.dumps(dict(sentence=f'a film {i}', label=('pos', 'neg')[i % 2])) + '\n'
               for i in range(8))


@pytest.mark.parametrize('line, match', [
    ('{"sentence": "x", "label": null}', r"bad\.jsonl:9: label field 'label' is null"),
    ('{"sentence": "x", "label": true}', r"bad\.jsonl:9: label field 'label' is true"),
    ('{"sentence": "x", "label": [1]}', r"bad\.jsonl:9: label field 'label' is \[1\]"),
    ('{"sentence": "x", "label": {"a": 1}}', r"bad\.jsonl:9: label field 'label' is \{"),
    ('{"sentence": null, "label": "pos"}', r"bad\.jsonl:9: field 'sentence' is null, not a text"),
    ('[1, 2]', r'bad\.jsonl:9: expected a JSON object, got \[1, 2\]'),
    ('"x"', r'bad\.jsonl:9: expected a JSON object, got "x"'),
    ('42', r'bad\.jsonl:9: expected a JSON object, got 42'),
    ('null', r'bad\.jsonl:9: expected a JSON object, got null'),
    ('[' * 100000, r'bad\.jsonl:9: invalid JSON'),
])
def test_table_jsonl_values_of_the_wrong_type(tmp_path, capsys, line, match):
    finetune(capsys, tmp_path, 'classify', write(tmp_path / 'bad.jsonl', ROWS + line + '\n'),
             match=match)


def test_table_jsonl_numbers_are_one_class_per_value(tmp_path):
    path = write(tmp_path / 'n.jsonl', '{"sentence": "a", "label": 1}\n{"sentence": "b", "label": 1.0}\n'
                                      '{"sentence": "c", "label": "2"}\n{"sentence": 7, "label": 2}\n')
    rows = tsv.read_table(path)
    assert [r.label for r in rows] == ['1', '1', '2', '2'] and rows[3].texts == ('7',)


@pytest.mark.parametrize('row, match', [
    (dict(gold_label=['neutral'], sentence1='a', sentence2='b'), r"x\.jsonl:49: field 'gold_label' is \[\"neutral\"\]"),
    (dict(gold_label='neutral', sentence1=None, sentence2='b'), r"x\.jsonl:49: field 'sentence1' is null"),
])
def test_snli_json_values_of_the_wrong_type(tmp_path, capsys, row, match):
    train = snli_lines(tmp_path / 'x.jsonl', 0, 48)
    with open(train, 'a') as f:
        f.write(json.dumps(row) + '\n')
    finetune(capsys, tmp_path, 'snli', train, '--test', SAMPLE, match=match)


def squad_with(tmp_path, change):
    data = json.loads(open(squad_json(tmp_path / 'q.json')).read())
    change(data)
    return write(tmp_path / 'q.json', json.dumps(data, indent=1))


def answer(key, value):
    return lambda data: data['data'][0]['paragraphs'][0]['qas'][0]['answers'][0].update({key: value})


@pytest.mark.parametrize('change, match', [
    (lambda data: data.update(data=[5]), r'q\.json \(data\[0\]\): expected a JSON object, got 5'),
    (lambda data: data.update(data={}), r'q\.json: "data" is dict, not a list'),
    (answer('answer_start', -6), r'q\.json:\d+ \(question q0, data\[0\]\.paragraphs\[0\]\.qas\[0\]\): '
                                 r'answers\[0\] needs .* "answer_start" >= 0'),
    (answer('answer_start', True), r'q\.json:\d+ \(question q0, .*answers\[0\] needs'),
    (answer('text', None), r'q\.json:\d+ \(question q0, .*answers\[0\] needs a non-empty "text"'),
])
def test_squad_values_of_the_wrong_type(tmp_path, capsys, change, match):
    finetune(capsys, tmp_path, 'qa', squad_with(tmp_path, change), '--stride', 8,
             '--max-query-len', 8, match=match)


@pytest.fixture(scope='module')
def book_model(tmp_path_factory):
    """A pretrained BERT folder in the book's format (vocab.json, pretrained.params, config.json)."""
    folder = str(tmp_path_factory.mktemp('book') / 'bert')
    return pretrained.save_pretrained(tiny_bert(len(TOKENS)), pretrained.vocab_from_tokens(TOKENS),
                                      folder, dict(TINY, vocab_size=len(TOKENS)))


def variant(book_model, tmp_path, **files):
    """A copy of ``book_model`` with ``files`` (name with _ for .: text or bytes) replaced."""
    folder = tmp_path / 'model'
    shutil.copytree(book_model, folder)
    for name, data in files.items():
        write(folder / name.replace('_', '.'), data)
    return str(folder)


@pytest.mark.parametrize('vocab, match', [
    (json.dumps({t: i for i, t in enumerate(TOKENS)}), 'expected a JSON list of tokens .*got dict'),
    ('"<cls><sep>"', 'expected a JSON list of tokens .*got str'),
    ('5', 'expected a JSON list of tokens .*got int'),
    (json.dumps(list(range(len(TOKENS)))), 'token 0 is 0, not a string'),
    (json.dumps(TOKENS[:-1] + ['film']), "the token 'film' appears twice"),
    (json.dumps(['<x>'] + TOKENS[1:]), r'no <cls> token \(a BERT vocabulary has'),
    (b'["caf\xe9"]', r'not UTF-8 text \(byte 0xe9 at line 1, column 6; JSON files are UTF-8'),
])
def test_a_vocabulary_of_the_wrong_type_names_the_file(book_model, tmp_path, capsys, vocab, match):
    folder = variant(book_model, tmp_path, vocab_json=vocab)
    finetune(capsys, tmp_path, 'classify', classify_tsv(tmp_path / 't.tsv'),
             model=('--pretrained', folder), match=f'model.*vocab.json.*{match}')


# --- 2. encodings ---

HEADER = 'gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1\tsentence2\n'


@pytest.mark.parametrize('name, text, read, expected', [
    ('t.csv', 'sentence,label\nnice,pos\nawful,neg\n', tsv.read_table,
     lambda rows: [(r.texts, r.label) for r in rows] == [(('nice',), 'pos'), (('awful',), 'neg')]),
    ('t.tsv', 'sentence\tlabel\nnice\tpos\n', tsv.read_table,
     lambda rows: [(r.texts, r.label) for r in rows] == [(('nice',), 'pos')]),
    ('t.jsonl', '{"sentence": "nice", "label": "pos"}\n', tsv.read_table,
     lambda rows: [(r.texts, r.label) for r in rows] == [(('nice',), 'pos')]),
    ('snli_1.0_dev.txt', HEADER + 'neutral\t( A man )\t( A dog )\tA man\tA dog\n\n', snli.read_snli,
     lambda out: out == (['A man'], ['A dog'], [2])),
    ('s.jsonl', '{"gold_label": "neutral", "sentence1": "a", "sentence2": "b"}\n', snli.read_snli,
     lambda out: out == (['a'], ['b'], [2])),
    ('c.conll', '-DOCSTART- -X- -X- O\n\nParis NN I-NP B-LOC\n', conll.read_conll,
     lambda out: [(s.words, s.tags, s.line) for s in out] == [(['Paris'], ['B-LOC'], 3)]),
])
def test_a_utf8_byte_order_mark_is_read_as_none(tmp_path, name, text, read, expected):
    assert expected(read(write(tmp_path / name, BOM + text.encode('utf-8'))))


def test_a_squad_file_with_a_byte_order_mark(tmp_path):
    path = squad_json(tmp_path / 'q.json')
    questions = squad.read_squad(path)
    write(tmp_path / 'q.json', BOM + open(path, 'rb').read())
    assert squad.read_squad(path) == questions


def test_bytes_that_are_not_utf8_name_file_line_and_encoding(tmp_path, capsys):
    train = snli_lines(tmp_path / 'x.jsonl', 0, 48)
    with open(train, 'ab') as f:
        f.write('{"gold_label": "neutral", "sentence1": "café", "sentence2": "b"}\n'.encode('cp1252'))
    finetune(capsys, tmp_path, 'snli', train, '--test', SAMPLE,
             match=r'x\.jsonl:49: byte 0xe9 at column 4\d is not valid utf-8 .*--encoding cp1252')
    corpus = wiki_file(tmp_path / 'wiki.tokens')
    with open(corpus, 'ab') as f:
        f.write(b' caf\xe9 au lait . the film . \n')
    refused(capsys, 'pretrain', '--corpus', corpus, '--out', tmp_path / 'bert', '--preset', 'bert.tiny',
            '--devices', 'cpu', match=r'wiki\.tokens:302: byte 0xe9 at column 5 .*--encoding cp1252')
    assert sorted(os.listdir(tmp_path)) == ['wiki.tokens', 'x.jsonl']


@pytest.mark.slow
def test_encoding_is_honoured_for_snli_and_utf16(tmp_path, capsys):
    path = write(tmp_path / 'x.jsonl', open(SAMPLE, encoding='utf-8').read().encode('cp1252') +
                 '{"gold_label": "neutral", "sentence1": "café", "sentence2": "b"}\n'.encode('cp1252'))
    task = task_of_config(FinetuneConfig(task='snli', train=path, encoding='cp1252'))
    assert task.read(path)[-1] == ('café', 'b', 2, True)  # raw text: no parse fields
    code, err = cli_run(capsys, 'finetune', '--task', 'snli', '--train', path, *TINY_ARGS,
                        '--encoding', 'cp1252', '--max-examples', 32, '--out', tmp_path / 'run')
    assert code == 0, err
    path = write(tmp_path / 'u.tsv', 'sentence\tlabel\ncafé\tpos\n'.encode('utf-16'))
    assert tsv.read_table(path, encoding='utf-16')[0].texts == ('café',)
    with pytest.raises(ValueError, match=r'u\.tsv:1: .*UTF-16 byte-order mark: give --encoding utf-16'):
        tsv.read_table(path)


@pytest.mark.parametrize('encoding', ['klingon', 'base64', 'rot13', ''])
def test_an_unknown_encoding_is_named(tmp_path, capsys, encoding):
    finetune(capsys, tmp_path, 'classify', classify_tsv(tmp_path / 't.tsv'), '--encoding', encoding,
             match=f'--encoding {encoding}: not a text encoding Python knows')


# --- 3. sizes ---

BIG = 'x' * 1_000_000


def test_a_one_megabyte_field_is_read(tmp_path):
    rows = tsv.read_table(write(tmp_path / 't.csv', f'sentence,label\n"{BIG} y",pos\nshort,neg\n'))
    assert len(rows[0].texts[0]) == 1_000_002 and rows[1].label == 'neg'
    rows = tsv.read_table(write(tmp_path / 't.tsv', f'sentence\tlabel\n{BIG}\tpos\n'))
    assert len(rows[0].texts[0]) == 1_000_000


@pytest.mark.parametrize('task, name, text, args, match', [
    ('tag', 'x.conll', f'Paris NN I-NP {BIG}\n', ('--tag-scheme', 'iob'),
     r"x\.conll:1: tag 'xxx.*\(1000002 chars\) is not O"),
    ('tag', 'x.conll', f'{BIG}\n', (), r"x\.conll:1: one column \('xxx"),
    ('classify', 'x.jsonl', json.dumps([BIG]) + '\n', (), r'x\.jsonl:1: expected a JSON object, got \["xxx'),
    ('classify', 'x.jsonl', '{"sentence": "a", "label": "b"}\n', ('--text-columns', BIG), r"no field 'xxx"),
    ('regress', 'x.tsv', 'sentence\tscore\n' + 'a\t1\nb\t2\n' * 8 + f'c\t{BIG}\n',
     ('--text-columns', 'sentence'), r"x\.tsv:18: label 'xxx.*\(1000002 chars\) is not a number"),
    ('snli', 'x.jsonl', json.dumps(dict(gold_label=BIG, sentence1='a', sentence2='b')) + '\n', (),
     r"x\.jsonl:1: unknown label 'xxx"),
])
def test_a_message_quoting_a_megabyte_is_short(tmp_path, capsys, task, name, text, args, match):
    finetune(capsys, tmp_path, task, write(tmp_path / name, text), *args, match=match)


def test_an_unknown_test_label_of_a_megabyte_is_short(tmp_path, capsys):
    test = write(tmp_path / 'test.tsv', f'sentence\tlabel\na film\t{BIG}\n')
    finetune(capsys, tmp_path, 'classify', classify_tsv(tmp_path / 't.tsv'), '--test', test,
             match=r"test\.tsv:2: unknown label 'xxx.* \(the model knows 'neg', 'pos'\)")


# --- 4. corrupt checkpoints and model folders: named before any training ---

def test_a_damaged_zip_member_names_the_zip(book_model, tmp_path, capsys):
    path = str(tmp_path / 'bert.zip')
    pretrained.save_pretrained(*pretrained.load_pretrained_model(book_model, devices=[mx.cpu()]),
                               path, dict(TINY, vocab_size=len(TOKENS)))
    data = bytearray(open(path, 'rb').read())
    start = data.index(b'pretrained.params') + 100  # inside the compressed parameters
    data[start:start + 64] = bytes(64)
    write(tmp_path / 'bert.zip', bytes(data))
    finetune(capsys, tmp_path, 'classify', classify_tsv(tmp_path / 't.tsv'),
             model=('--pretrained', path), match=r'bert\.zip: corrupt or unreadable zip \(')


@pytest.mark.parametrize('config, match', [
    ('[1]', r'config\.json: expected a JSON object, got \[1\]'),
    ('null', r'config\.json: expected a JSON object, got null'),
    ('{"num_heads": ', r'config\.json: invalid JSON at line 1'),
    (json.dumps(dict(TINY, vocab_size=len(TOKENS), num_heads=0)), r"config\.json: 'num_heads' is 0"),
    (json.dumps(dict(TINY, vocab_size=len(TOKENS), num_heads=3)), r'num_heads=3 does not divide num_hiddens=32'),
    (json.dumps(dict(TINY, vocab_size=len(TOKENS), num_blks=10 ** 9)),
     r'has num_blks=1000000000 but pretrained\.params has num_blks=2'),
])
def test_a_broken_pretrained_config_names_the_file_and_field(book_model, tmp_path, capsys, config, match):
    folder = variant(book_model, tmp_path, config_json=config)
    finetune(capsys, tmp_path, 'classify', classify_tsv(tmp_path / 't.tsv'),
             model=('--pretrained', folder), match=match)


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    """A saved classify model folder, as finetune writes it (untrained: its weights as initialized)."""
    return untrained_model('classify', tmp_path_factory.mktemp('saved'))


def edited(saved, tmp_path, change=None, vocab=None):
    folder = tmp_path / 'model'
    shutil.copytree(saved, folder)
    config = json.loads((folder / 'config.json').read_text())
    if change is not None:
        write(folder / 'config.json', change(config) if callable(change) else change)
    if vocab is not None:
        write(folder / 'vocab.json', vocab)
    return str(folder)


def without(key):
    return lambda c: json.dumps({k: v for k, v in c.items() if k != key})


def bert_with(**kw):
    return lambda c: json.dumps(dict(c, bert=dict(c['bert'], **kw)))


@pytest.mark.parametrize('change, vocab, match', [
    ('[1]', None, r'model/config\.json: not a JSON object'),
    ('null', None, r'model/config\.json: not a JSON object'),
    ('{"task": ', None, r'model/config\.json: invalid JSON at line 1'),
    (lambda c: json.dumps(dict(c, bert={k: v for k, v in c['bert'].items() if k != 'vocab_size'})),
     None, r'config\.json: no vocab_size in the model configuration'),
    (without('labels'), None, r"config\.json: 'labels' is None; expected a list of two or more"),
    (lambda c: json.dumps(dict(c, labels=[1, 2])), None, r"config\.json: 'labels' is \[1, 2\]"),
    (without('max_len'), None, r"config\.json: 'max_len' is None; expected an integer >= 3"),
    (lambda c: json.dumps(dict(c, max_len=5000)), None, r"config\.json: max_len 5000 is longer than the BERT's 1000"),
    (lambda c: json.dumps(dict(c, task=['x'])), None, r"config\.json: 'task' is \['x'\]; expected one of"),
    (lambda c: json.dumps(dict(c, reader=None)), None, r"config\.json: 'reader' is None"),
    (bert_with(num_heads=0), None, r"config\.json: \"bert\": 'num_heads' is 0; expected a positive integer"),
    (bert_with(num_heads=3), None, r'config\.json: "bert": num_heads=3 does not divide num_hiddens=128'),
    (bert_with(num_blks=10 ** 9), None, r'has num_blks=1000000000 but model\.params has num_blks=2'),
    (None, '5', r'model/vocab\.json: expected a JSON list of tokens'),
    (None, '["<unk>", "<pad>", "<sep>"]', r'model/vocab\.json: no <cls> token'),
])
def test_a_broken_model_folder_names_the_file_and_field(saved, tmp_path, capsys, change, vocab, match):
    folder = edited(saved, tmp_path, change, vocab)
    refused(capsys, 'predict', '--model', folder, '--text', 'a fine film', '--devices', 'cpu', match=match)
    refused(capsys, 'evaluate', '--model', folder, '--data', classify_tsv(tmp_path / 't.tsv'),
            '--devices', 'cpu', match=match)


@pytest.mark.parametrize('state, match', [
    ('{"run": ', r'state\.json: invalid JSON at line 1'),
    ('[]', r'state\.json: not a checkpoint state \(no "run" object\)'),
    (dict(epoch='1', batch=0), r'state\.json: "epoch" is \'1\', not an integer >= 0'),
    (dict(epoch=0, batch=999), r'state\.json: "batch" is 999, not an integer in 0\.\.2'),
    (dict(epoch=0, batch=1, history=[]), r'state\.json: "history" is not an object of lists'),
])
def test_a_corrupt_state_on_resume_is_named_before_training(tmp_path, capsys, state, match):
    out = tmp_path / 'run'
    os.makedirs(out / 'checkpoint')
    write(out / 'checkpoint' / 'state.json',
          state if isinstance(state, str) else json.dumps(dict(dict(history={}, run={}), **state)))
    refused(capsys, 'finetune', '--task', 'classify', '--train', classify_tsv(tmp_path / 't.tsv'),
            *TINY_ARGS, '--out', out, '--resume', '--epochs', 2, match=match)
    assert os.listdir(out) == ['checkpoint']  # no model, no result: nothing was trained


def test_a_corrupt_pretraining_state_on_resume_is_named_before_training(tmp_path, capsys):
    os.makedirs(tmp_path / 'bert.ckpt')
    write(tmp_path / 'bert.ckpt' / 'state.json', json.dumps(dict(run={}, step=-1, history={})))
    refused(capsys, 'pretrain', '--corpus', wiki_file(tmp_path / 'wiki.tokens'), '--out',
            tmp_path / 'bert', '--preset', 'bert.tiny', '--max-len', 32, '--batch-size', 8,
            '--steps', 2, '--devices', 'cpu', '--resume',
            match=r'bert\.ckpt/state\.json: "step" is -1, not an integer >= 0')
    assert sorted(os.listdir(tmp_path)) == ['bert.ckpt', 'wiki.tokens']
