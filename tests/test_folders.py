"""Folders told apart by their files, and what is wrong with one named (issue 24, kind 5):
never "directory has no vocab.json" alone for a Hugging Face folder with a broken config."""
import json
import shutil

import pytest
from hf_tiny import write_tiny_hf_bert
from tiny_data import TINY_RUN, task_files

from gluon_bertft import FinetuneConfig, finetune
from gluon_bertft.common.errors import PretrainedError
from gluon_bertft.inference import predict
from gluon_bertft.models import hf
from gluon_bertft.models.pretrained import load_pretrained_model


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / 'hf'
    write_tiny_hf_bert(str(path))
    return path


@pytest.mark.parametrize('change, problem', [
    (lambda f: (f / 'config.json').unlink(), 'config.json is missing'),
    (lambda f: (f / 'config.json').write_text(''), 'config.json is empty or not valid JSON'),
    (lambda f: (f / 'config.json').write_text('null'), 'config.json is null, not a JSON object'),
    (lambda f: (f / 'config.json').write_text('[1]'), r'config.json is \[1\], not a JSON object'),
    (lambda f: (f / 'config.json').write_text('{"hidden_size": 32}'), 'config.json names no model_type'),
    (lambda f: (f / 'config.json').write_bytes(json.dumps({'model_type': 'bert'}).encode('utf-16')),
     r'config.json is not UTF-8 text \(UTF-16\?'),
    (lambda f: (f / 'model.safetensors').unlink(), 'it has no weights'),
])
def test_a_broken_hugging_face_folder_says_what_is_wrong(folder, change, problem):
    change(folder)
    # a config.json that is not JSON is read as the Hugging Face folder it claims to be
    with pytest.raises(PretrainedError, match=rf'hf(: looks like a Hugging Face model folder '
                       rf'\(it has .*\), but |/){problem}'):
        load_pretrained_model(str(folder))


@pytest.mark.parametrize('key, value, expected', [
    ('layer_norm_eps', 'abc', 'a number > 0'), ('layer_norm_eps', None, 'a number > 0'),
    ('type_vocab_size', 1.5, 'an integer >= 1'), ('hidden_dropout_prob', 1, r'a number in \[0, 1\)'),
    ('attention_probs_dropout_prob', True, r'a number in \[0, 1\)'),
])
def test_a_config_value_of_the_wrong_type_names_the_field(folder, key, value, expected):
    config = json.loads((folder / 'config.json').read_text())
    (folder / 'config.json').write_text(json.dumps(dict(config, **{key: value})))
    with pytest.raises(PretrainedError, match=rf"config\.json: '{key}' is .*; expected {expected}"):
        hf.read_hf_config(str(folder))


def test_a_tokenizer_config_error_names_that_file(folder):
    (folder / 'tokenizer_config.json').write_text('[]')
    with pytest.raises(PretrainedError, match=r'tokenizer_config\.json: expected a JSON object'):
        load_pretrained_model(str(folder))


def test_a_fine_tuned_wordpiece_model_without_its_tokenizer_says_so(folder, tmp_path):
    files = task_files('classify', tmp_path)
    finetune(FinetuneConfig(task='classify', epochs=1, out=str(tmp_path / 'run'),
                            **dict(TINY_RUN, pretrained=str(folder), preset=None, **files)),
             log=lambda *a: None)
    model = tmp_path / 'run' / 'model'
    for name in ('tokenizer.json', 'vocab.txt'):
        (model / name).unlink()
    with pytest.raises(PretrainedError, match=r'model: no tokenizer\.json or vocab\.txt: this model '
                       r'was fine-tuned from a Hugging Face BERT .* they are missing'):
        predict.load_model(str(model))


def test_an_empty_folder_names_both_formats(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(PretrainedError, match=r'empty: directory has no vocab\.json; a folder in the '
                       r"book's format holds vocab\.json and pretrained\.params \(a Hugging Face "
                       r'one: config\.json and model\.safetensors\)'):
        load_pretrained_model(str(tmp_path / 'empty'))
    shutil.rmtree(tmp_path / 'empty')
