"""Readers (TSV/CSV/JSONL/lines, CoNLL, SQuAD) on the real files, and their errors."""
import collections
import json

import pytest
from conftest import shared_file

from gluon_bertft.common import metrics
from gluon_bertft.common.errors import DataError
from gluon_bertft.data import conll, squad, tsv
from gluon_bertft.data.text import label_ids, scores


def write(tmp_path, name, text, encoding='utf-8'):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


# --- tables ---

def test_sst2_tsv_with_header():
    dev = tsv.read_table(shared_file('sst2', 'dev.tsv'))
    assert len(dev) == 872
    assert collections.Counter(r.label for r in dev) == {'0': 428, '1': 444}
    assert dev[0].texts == ("it 's a charming and often affecting journey . ",)
    assert dev[0].where.endswith('dev.tsv:2')
    assert len(tsv.read_table(shared_file('sst2', 'train.tsv'))) == 60614


def test_sms_spam_by_column_number_without_header():
    rows = tsv.read_table(shared_file('sms_spam', 'SMSSpamCollection'), ('1',), '0')
    assert len(rows) == 5574
    assert collections.Counter(r.label for r in rows) == {'ham': 4827, 'spam': 747}
    assert rows[0].texts[0].startswith('Go until jurong point')


def test_rt_polarity_cp1252_lines():
    paths = [shared_file('rt-polarity', 'rt-polarity.pos'), shared_file('rt-polarity', 'rt-polarity.neg')]
    rows = tsv.read_lines(paths, 'cp1252')
    # splitting on \n only: splitlines() would also split at byte 0x85 and give more lines
    assert collections.Counter(r.label for r in rows) == {'pos': 5331, 'neg': 5331}
    assert any('\u2026' in r.texts[0] for r in rows)  # 0x85 is an ellipsis in Windows-1252
    with pytest.raises(DataError, match=r'rt-polarity\.pos:\d+: byte 0x[0-9a-f]{2} at column \d+ '
                                        r'is not valid utf-8 .*--encoding cp1252'):
        tsv.read_lines(paths, 'utf-8')


def test_csv_quoting_and_jsonl(tmp_path):
    path = write(tmp_path, 'a.csv', 'text,label\n"hello, world",pos\n"two\nlines",neg\n')
    rows = tsv.read_table(path, ('text',), 'label')
    assert [r.texts[0] for r in rows] == ['hello, world', 'two\nlines']
    assert rows[1].where.endswith('a.csv:4')
    snli = tsv.read_table(shared_file('snli', 'snli_1.0_dev.jsonl'), ('sentence1', 'sentence2'),
                          'gold_label')
    assert len(snli) == 9842 and len(snli[0].texts) == 2


@pytest.mark.parametrize('name, text, columns, match', [
    ('short.tsv', 'sentence\tlabel\ngood\t1\nbad\n', (('sentence',), 'label'),
     r'short\.tsv:3: 1 column\(s\), but column 1 \(\'label\'\) is read'),
    ('empty.tsv', 'sentence\tlabel\n \t1\n', (('sentence',), 'label'), r'empty\.tsv:2: empty text'),
    ('nolabel.tsv', 'sentence\tlabel\ngood\t\n', (('sentence',), 'label'), r'nolabel\.tsv:2: empty label'),
    ('header.tsv', 'text\tlabel\ngood\t1\n', (('sentence',), 'label'),
     r"header\.tsv:1: no column named 'sentence'"),
    ('bad.jsonl', '{"s": "a", "l": "x"}\n{"s": "b"\n', (('s',), 'l'), r'bad\.jsonl:2: invalid JSON'),
    ('key.jsonl', '{"s": "a"}\n', (('s',), 'l'), r"key\.jsonl:1: no label field 'l'"),
])
def test_table_errors_name_file_and_line(tmp_path, name, text, columns, match):
    with pytest.raises(DataError, match=match):
        tsv.read_table(write(tmp_path, name, text), *columns)


def test_unknown_label_and_bad_score_name_the_line(tmp_path):
    rows = tsv.read_table(write(tmp_path, 'dev.tsv', 'sentence\tlabel\na\tpos\nb\tmaybe\n'))
    with pytest.raises(DataError, match=r"dev\.tsv:3: unknown label 'maybe' \(the model knows 'neg', 'pos'\)"):
        label_ids(rows, ['neg', 'pos'])
    with pytest.raises(DataError, match=r"dev\.tsv:2: label 'pos' is not a number"):
        scores(rows)


# --- CoNLL ---

@pytest.mark.slow
def test_conll2003_counts_and_iob1_to_iob2():
    dev = conll.read_conll(shared_file('conll2003', 'eng.testa'))
    assert len(dev) == 3250 and sum(len(s.words) for s in dev) == 51362
    assert len(conll.read_conll(shared_file('conll2003', 'eng.train'))) == 14041
    for s in dev:  # IOB2: no I-X without an X before it
        for prev, tag in zip(['O'] + s.tags, s.tags):
            assert not tag.startswith('I-') or prev[2:] == tag[2:]
    # the published entity counts of the CoNLL-2003 English dev set
    kinds = collections.Counter(kind for s in dev for kind, _, _ in metrics.entity_spans(s.tags))
    assert kinds == {'PER': 1842, 'LOC': 1837, 'ORG': 1341, 'MISC': 922}
    assert conll.tag_names(dev) == ['O', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC', 'B-ORG', 'I-ORG',
                                    'B-PER', 'I-PER']
    assert dev[0].words[:2] == ['CRICKET', '-'] and dev[0].line == 1


def test_conll_iob1_and_iob2_files_read_alike(tmp_path):
    iob1 = write(tmp_path, 'a.iob1', '-DOCSTART- -X- O O\n\nEU I-ORG\nrejects O\nGerman I-MISC\n'
                                     '\nPeter I-PER\nBlackburn I-PER\nJohn B-PER\n')
    iob2 = write(tmp_path, 'a.iob2', 'EU B-ORG\nrejects O\nGerman B-MISC\n\n\nPeter B-PER\n'
                                     'Blackburn I-PER\nJohn B-PER\n')
    a, b = conll.read_conll(iob1), conll.read_conll(iob2)
    assert [s.tags for s in a] == [s.tags for s in b] == [['B-ORG', 'O', 'B-MISC'],
                                                          ['B-PER', 'I-PER', 'B-PER']]
    assert [s.line for s in a] == [3, 7]


@pytest.mark.parametrize('text, match', [
    ('EU B-ORG\nrejects\n', r'x\.conll:2: one column'),
    ('EU B-ORG\nrejects X-PER\n', r"x\.conll:2: tag 'X-PER' is not O, B-TYPE or I-TYPE"),
])
def test_conll_errors_name_the_line(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        conll.read_conll(write(tmp_path, 'x.conll', text))


# --- SQuAD ---

def test_squad_files():
    dev = squad.read_squad(shared_file('squad', 'dev-v1.1.shared.json'))
    assert len(dev) == 7753
    assert max(len(q.answers) for q in dev) > 1  # several gold answers per question
    assert all(q.context[a.start:a.start + len(a.text)] == a.text for q in dev for a in q.answers)
    train = squad.read_squad(shared_file('squad', 'train-v1.1.subset.json'))
    assert len(train) == 11877 and all(len(q.answers) == 1 for q in train)
    assert len(squad.read_squad(shared_file('squad', 'xquad.en.dev.json'))) == 816


def squad_file(tmp_path, context, answer, start, name='s.json'):
    data = {'version': '1.1', 'data': [{'title': 't', 'paragraphs': [
        {'context': 'The sky is blue.', 'qas': [{'id': 'q0', 'question': 'Colour?',
                                                 'answers': [{'text': 'blue', 'answer_start': 11}]}]},
        {'context': context, 'qas': [{'id': 'q1', 'question': 'What?',
                                      'answers': [{'text': answer, 'answer_start': start}]}]}]}]}
    return write(tmp_path, name, json.dumps(data, indent=1))


def test_squad_errors_name_file_line_and_question(tmp_path):
    path = squad_file(tmp_path, 'Grass is green.', 'blue', 3)
    line = next(i for i, text in enumerate(open(path), 1) if '"q1"' in text)
    with pytest.raises(DataError, match=rf"s\.json:{line} \(question q1, data\[0\]\.paragraphs\[1\]"
                                        r"\.qas\[0\]\): answers\[0\] 'blue' does not match the "
                                        r"passage at answer_start=3, which reads 'ss i'"):
        squad.read_squad(path)
    with pytest.raises(DataError, match=r'q1.*the question has no passage'):
        squad.read_squad(squad_file(tmp_path, '', 'blue', 0))
    path = write(tmp_path, 'broken.json', '{"data": [\n{"paragraphs": }')
    with pytest.raises(DataError, match=r'broken\.json:2: invalid JSON'):
        squad.read_squad(path)
    ok = squad.read_squad(squad_file(tmp_path, 'Grass is green.', 'green', 9))
    assert [q.answers[0].text for q in ok] == ['blue', 'green']


@pytest.mark.parametrize('name, text, match', [
    # an unquoted tab or comma inside a text: one field more than the header
    ('tab.tsv', 'sentence\tlabel\na fine film\tpos\na tab\there\tneg\n',
     r'tab\.tsv:3: 3 fields, but the header has 2 \(a tab inside a text\? TSV has no quoting'),
    ('comma.csv', 'sentence,label\n"a fine, film",pos\na bad, dull film,neg\n',
     r'comma\.csv:3: 3 fields, but the header has 2 \(a comma inside an unquoted text\?'),
    ('numbered.tsv', 'a fine film\tpos\nbad\tneg\textra\n',
     r'numbered\.tsv:2: 3 fields, but the first row has 2'),
])
def test_a_row_with_another_field_count_is_an_error(tmp_path, name, text, match):
    """Issue 24, kind 11: never an extra class or a cut text, silently."""
    path = tmp_path / name
    path.write_text(text)
    columns = dict(text_columns=('0',), label_column='1') if name == 'numbered.tsv' else {}
    with pytest.raises(DataError, match=match):
        tsv.read_table(str(path), **columns)
