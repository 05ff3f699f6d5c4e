"""The run configurations and the CLI options made from them: every option that does not
apply, or is out of range, is an error naming it (exit code 2), before anything is written."""
import dataclasses
import json

import pytest
from conftest import SAMPLE

from gluon_bertft import cli, pretrain
from gluon_bertft.common.errors import ConfigError
from gluon_bertft.config import FinetuneConfig, PretrainConfig, from_args

# a run that takes a second, should an option not be refused
CHEAP = ['--pretrained', 'random', '--preset', 'bert.tiny', '--max-len', '32', '--epochs', '1',
         '--batch-size', '8', '--max-examples', '8', '--max-test-examples', '8']


def finetune(tmp_path, *args):
    """The CLI's exit code (argparse's own errors exit 2 through SystemExit)."""
    try:
        return cli.main(['finetune', *CHEAP, '--devices', 'cpu', '--out', str(tmp_path / 'o'), *args])
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize('args, message', [
    (['--task', 'tag', '--format', 'csv'], '--format: applies to the table tasks (classify, '
                                           'pair-classify, regress), not --task tag'),
    (['--task', 'qa', '--text-columns', 'q'], '--text-columns: applies to the table tasks'),
    (['--task', 'snli', '--label-column', 'gold_label'], '--label-column: applies to the table tasks'),
    (['--task', 'tag', '--header'], '--header: applies to the table tasks'),
    (['--task', 'classify', '--stride', '32'], '--stride: applies to --task qa only'),
    (['--task', 'tag', '--max-query-len', '16'], '--max-query-len: applies to --task qa only'),
    (['--task', 'pair-classify', '--max-answer-len', '10'], '--max-answer-len: applies to --task qa only'),
    (['--task', 'qa', '--tokenizer', 'whitespace'], '--tokenizer: qa uses basic'),
    (['--task', 'snli', '--tokenizer', 'basic'], '--tokenizer: --task snli tokenizes as the book'),
    (['--task', 'classify', '--max-len', '2'], '--max-len 2: --task classify needs at least 3'),
    (['--task', 'snli', '--max-len', '4'], '--max-len 4: --task snli needs at least 5'),
    (['--task', 'classify', '--encoding', 'klingon'], '--encoding klingon: not a text encoding'),
    (['--task', 'classify', '--data', 'snli_1.0'], '--data: applies to --task snli without --train'),
    (['--task', 'snli', '--data', 'snli_1.0'], '--data: applies to --task snli without --train'),
    (['--task', 'classify', '--test', 'x.tsv', '--test-fraction', '0.2'],
     '--test-fraction: applies without --test'),
    (['--task', 'classify', '--trainable-blocks', '-1'], '--trainable-blocks -1: must be >= 0'),
    (['--task', 'classify', '--dropout', '1.5'], 'argument --dropout: 1.5: must be in [0, 1)'),
    (['--task', 'classify', '--lr', 'nan'], 'argument --lr: nan: must be a finite number > 0'),
    (['--task', 'classify', '--lr', '-1'], 'argument --lr: -1: must be a finite number > 0'),
    (['--task', 'classify', '--weight-decay', 'inf'], 'argument --weight-decay: inf: must be'),
    # float32, which training computes in: 1e308 overflows, 1e-320 becomes 0 (issue 24)
    (['--task', 'classify', '--lr', '1e308'], 'argument --lr: 1e308: out of range (float32'),
    (['--task', 'classify', '--lr', '1e-320'], 'argument --lr: 1e-320: out of range (float32'),
    (['--task', 'classify', '--clip-grad', '1e39'], 'argument --clip-grad: 1e39: out of range'),
    (['--task', 'classify', '--weight-decay', '1e-45'], 'argument --weight-decay: 1e-45: out of'),
    (['--task', 'classify', '--devices', 'cpu:99999999999999999999'], '--devices'),
    (['--task', 'classify', '--devices', 'gpu:0'], 'gpu(0) not usable'),
    (['--task', 'classify', '--dtype', 'float16'], '--dtype float16 needs GPUs'),
    (['--task', 'snli', '--dtype', 'float16'], '--dtype float16 needs GPUs'),
    (['--task', 'classify', '--devices', 'tpu'], "--devices 'tpu'"),
])
def test_an_option_that_does_not_apply_is_named(tmp_path, capsys, args, message):
    train = ['--train', SAMPLE if 'snli' in args else str(tmp_path / 'train.tsv')]
    code = finetune(tmp_path, *train, *args)  # the last --devices wins
    err = capsys.readouterr().err
    assert code == 2
    assert 'error: ' in err and message in err and 'Traceback' not in err, err
    assert not (tmp_path / 'o').exists()  # refused before anything was read or written


def test_the_trainable_blocks_beyond_the_encoder_are_named(tmp_path, capsys):
    assert finetune(tmp_path, '--train', SAMPLE, '--trainable-blocks', '3') == 2
    assert '--trainable-blocks 3: the BERT has 2 blocks' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('command, args, message', [
    ('pretrain', ['--valid-fraction', '0.1'], 'unrecognized arguments: --valid-fraction 0.1'),
    ('pretrain', ['--trainable-blocks', '1'], 'unrecognized arguments: --trainable-blocks'),
    ('pretrain', ['--book-batches'], 'unrecognized arguments: --book-batches'),
    ('pretrain', ['--task', 'tag'], 'unrecognized arguments: --task'),
    ('finetune', ['--steps', '10'], 'unrecognized arguments: --steps'),
    ('finetune', ['--corpus', 'wiki'], 'unrecognized arguments: --corpus'),
    ('finetune', ['--batch-size', '0'], 'argument --batch-size: 0: must be a positive integer'),
    ('finetune', ['--valid-fraction', '1'], 'argument --valid-fraction: 1: must be in [0, 1)'),
    ('finetune', ['--task', 'ner'], "argument --task: invalid choice: 'ner'"),
    ('finetune', ['--dtype', 'bfloat16'], "argument --dtype: invalid choice: 'bfloat16'"),
    ('pretrain', ['--checkpoint-every', '0'], 'argument --checkpoint-every: 0: must be a positive'),
])
def test_options_of_another_command_or_out_of_range_are_refused_by_the_parser(
        tmp_path, capsys, command, args, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, '--out', str(tmp_path / 'o'), *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('args, message', [
    (['--steps', '-1'], '--steps -1: must be >= 0'),
    (['--preset', 'bert.huge'], "--preset 'bert.huge': unknown"),
    (['--preset', 'bert.tiny', '--max-len', '2000'], '--max-len 2000: longer than the bert.tiny'),
])
def test_pretrain_values_out_of_range_are_named(tmp_path, capsys, args, message):
    corpus = tmp_path / 'wiki.tokens'
    corpus.write_text(' a b . c d . \n')
    assert cli.main(['pretrain', '--corpus', str(corpus), '--devices', 'cpu',
                     '--out', str(tmp_path / 'o.zip'), *args]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['wiki.tokens']


def test_predict_options_that_do_not_apply(tmp_path, capsys):
    assert cli.main(['predict', '--model', str(tmp_path), '--text', 'hi', '--output',
                     str(tmp_path / 'p.jsonl')]) == 2
    assert '--output: applies with --data' in capsys.readouterr().err
    assert cli.main(['predict', '--model', str(tmp_path), '--data', 'x.tsv', '--output',
                     str(tmp_path / 'p.jsonl'), '--text', 'hi']) == 2
    assert '--text: not with --data' in capsys.readouterr().err
    assert cli.main(['predict', '--model', str(tmp_path), '--data', 'x.tsv']) == 2
    assert 'predict --data: give --output' in capsys.readouterr().err
    assert not (tmp_path / 'p.jsonl').exists()


def test_check_without_the_cli():
    with pytest.raises(ConfigError, match='--checkpoint-every: give the output folder'):
        FinetuneConfig(task='snli', checkpoint_every=5).check()
    with pytest.raises(ConfigError, match='--task tag: give the training file'):
        FinetuneConfig(task='tag').check()
    FinetuneConfig(task='qa', train='t.json', stride=32, tokenizer='basic').check()
    FinetuneConfig(task='classify', train='t.tsv', format='csv', header=False).check()
    FinetuneConfig(task='snli', train=SAMPLE, test_fraction=0.2).check()
    FinetuneConfig(task='qa', train='t.json', encoding='UTF_8').check()
    with pytest.raises(ConfigError, match='--batch-size 0: must be a positive integer'):
        pretrain.pretrain_bert('no-corpus', 'o.zip', batch_size=0)  # before reading the corpus


def test_options_are_the_config_fields_with_their_defaults():
    parser = cli.build_parser()
    args = parser.parse_args(['finetune', '--task', 'classify', '--text-columns', 'a, b',
                              '--no-hybridize', '--header'])
    config = from_args(FinetuneConfig, args)
    defaults = FinetuneConfig()
    assert (config.task, config.text_columns, config.hybridize, config.header) == \
        ('classify', ('a', 'b'), False, True)
    for f in dataclasses.fields(FinetuneConfig):
        if f.name not in ('task', 'text_columns', 'hybridize', 'header'):
            assert getattr(config, f.name) == getattr(defaults, f.name), f.name
    config = from_args(PretrainConfig, parser.parse_args(['pretrain', '--steps', '7']))
    assert (config.steps, config.checkpoint_every, config.lr) == (7, 50, 0.01)
    assert config.preset == 'bert.small' and config.resume is False


def test_run_settings_leave_out_what_a_resumed_run_may_change():
    run = FinetuneConfig(task='classify', train='t.tsv', text_columns=('a',), epochs=9, lr=1.0,
                         devices='cpu:0,cpu:1', out='o').run_settings(num_workers=1)
    assert not set(FinetuneConfig.RESUMABLE) & set(run)
    assert run['text_columns'] == ['a'] and run['num_workers'] == 1
    assert json.loads(json.dumps(run)) == run  # as a checkpoint stores it
    assert 'steps' not in PretrainConfig().run_settings() and 'corpus' not in PretrainConfig().run_settings()
