"""Plain-text pretraining input (``pretrain --format text``): sentences, CJK characters, the CLI."""
import json
import os
import random

import mxnet as mx
import pytest

from gluon_bertft import pretrain
from gluon_bertft.cli import main
from gluon_bertft.common.errors import ConfigError, DataError
from gluon_bertft.config import PretrainConfig
from gluon_bertft.data.plaintext import read_text, split_sentences
from gluon_bertft.data.words import WordTokenizer
from gluon_bertft.models import pretrained

CHARS = '我们今天去北京看电影很好吃饭了不错服务酒店房间'


def chinese_text(num_lines=80, seed=0):
    """Lines of two to four sentences of random characters, each ended by 。！ or ？."""
    rng = random.Random(seed)
    sentence = lambda: ''.join(rng.choice(CHARS) for _ in range(rng.randint(3, 9))) + rng.choice('。！？')
    return ''.join(''.join(sentence() for _ in range(rng.randint(2, 4))) + '\n'
                   for _ in range(num_lines))


def write(tmp_path, text, name='zh.txt'):
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    return str(path)


def test_sentences_end_at_chinese_and_latin_marks_which_they_keep():
    assert split_sentences('房间很好。早餐一般！还会再来吗？会') == ['房间很好。', '早餐一般！', '还会再来吗？', '会']
    assert split_sentences('“太好了！”他说。') == ['“太好了！”', '他说。']
    assert split_sentences('It costs 3.5 dollars. Fine! Really? yes') == \
        ['It costs 3.5 dollars.', 'Fine!', 'Really?', 'yes']
    assert split_sentences('e.g.this stays.  ') == ['e.g.this stays.']
    assert split_sentences('   \n') == []


def test_read_text_splits_cjk_characters_and_keeps_paragraphs_of_two_sentences(tmp_path):
    path = write(tmp_path, '房间很好。早餐一般！\n只有一句。\n\nGreat Hotel, 5 stars. Would stay again!\n')
    assert read_text(path, shuffle=False) == [
        ['房 间 很 好 。', '早 餐 一 般 ！'],
        ['great hotel , 5 stars .', 'would stay again !']]


def test_read_text_shuffles_with_pythons_random_as_the_book(tmp_path):
    path = write(tmp_path, chinese_text(20))
    random.seed(1)
    first = read_text(path)
    random.seed(1)
    assert read_text(path) == first != read_text(path, shuffle=False)
    assert sorted(first) == sorted(read_text(path, shuffle=False))


def test_empty_text_or_no_two_sentence_line_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r'empty\.txt: the text is empty'):
        read_text(write(tmp_path, '\n  \n', 'empty.txt'))
    with pytest.raises(DataError, match=r'one\.txt: no line has two sentences'):
        read_text(write(tmp_path, '只有一句。\n另一行也是一句\n', 'one.txt'))


def test_format_text_takes_a_file_and_is_recorded_only_when_given(tmp_path):
    with pytest.raises(ConfigError, match='--format text reads one plain-text file'):
        pretrain.check_pretrain_config(PretrainConfig(corpus=str(tmp_path), out=str(tmp_path / 'o'),
                                                      format='text'))
    # checkpoints written before --format existed name no format: resuming them still matches
    assert 'format' not in PretrainConfig(corpus='c', out='o').run_settings()
    assert PretrainConfig(corpus='c', out='o', format='text').run_settings()['format'] == 'text'


def test_dataset_of_text_has_a_character_vocabulary(tmp_path):
    dataset = pretrain.load_corpus(write(tmp_path, chinese_text()), 32, seed=0, format='text')
    tokens = set(dataset.vocab.idx_to_token)
    assert set(CHARS) | set('。！？') <= tokens
    assert len(dataset) > 100 and dataset.all_token_ids.shape[1] == 32


@pytest.mark.slow
def test_cli_pretrains_on_text_and_finetune_reads_with_its_vocabulary(tmp_path, capsys):
    corpus, out = write(tmp_path, chinese_text()), str(tmp_path / 'bert_zh.zip')
    assert main(['pretrain', '--corpus', corpus, '--format', 'text', '--preset', 'bert.tiny',
                 '--steps', '2', '--batch-size', '16', '--max-len', '32', '--devices', 'cpu',
                 '--out', out]) == 0
    assert 'vocabulary of' in capsys.readouterr().out
    _, vocab = pretrained.load_pretrained_model(out, devices=[mx.cpu()])
    # fine-tuning's basic tokenizer gives the pretraining vocabulary's tokens: no <unk>
    tokens, _, valid_lens = WordTokenizer(vocab, 'basic').encode_texts([('我们去北京看电影。',)], 16)
    unk = vocab.token_to_idx['<unk>']
    assert valid_lens[0] == 11 and unk not in tokens[0, :11].tolist()
    rows = [json.dumps(dict(text=line, label='pos' if i % 2 else 'neg'), ensure_ascii=False)
            for i, line in enumerate(chinese_text(48, seed=1).splitlines())]
    train = write(tmp_path, '\n'.join(rows) + '\n', 'train.jsonl')
    run = str(tmp_path / 'run')
    assert main(['finetune', '--task', 'classify', '--train', train, '--text-columns', 'text',
                 '--pretrained', out, '--tokenizer', 'basic', '--epochs', '1', '--batch-size',
                 '16', '--max-len', '32', '--devices', 'cpu', '--out', run]) == 0
    assert os.path.isfile(os.path.join(run, 'model', 'model.params'))
