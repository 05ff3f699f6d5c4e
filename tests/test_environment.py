"""Environment variables of the package (issue 24, kind 9; docs/bad-input.md lists them):
each checked, with a message that names it, before it can abort or misdirect a run."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from gluon_bertft.common import threads
from gluon_bertft.common.errors import ConfigError, PretrainedError
from gluon_bertft.models import pretrained
from gluon_bertft.training import distributed


def test_a_thread_count_past_the_machine_is_capped_with_a_warning(capsys, monkeypatch):
    monkeypatch.setattr(threads, 'configured', threads.configured)  # restored after the test
    assert threads.configure(environ={threads.ENV: '99999'}, modules={}) == threads.MAX_THREADS
    assert f"GLUON_BERTFT_THREADS='99999' is over {threads.MAX_THREADS}" in capsys.readouterr().err
    assert threads.configure(environ={threads.ENV: '3'}, modules={}) == 3


@pytest.mark.slow
def test_a_huge_thread_count_does_not_abort_the_cli():
    env = dict(os.environ, GLUON_BERTFT_THREADS='99999')
    env.pop('OMP_NUM_THREADS', None)
    done = subprocess.run([sys.executable, '-m', 'gluon_bertft', 'evaluate', '--model', 'nowhere',
                           '--data', 'x'], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and 'is over' in done.stderr, done.stderr[-400:]


@pytest.mark.parametrize('value', ['abc', '0', '-1', 'nan', 'inf', '1e9'])
def test_a_bad_timeout_names_the_variable(value):
    with pytest.raises(ConfigError, match=rf"\$GLUON_BERTFT_TIMEOUT='{value}': give seconds from 1"):
        distributed.timeout_setting({distributed.TIMEOUT_ENV: value})


def test_the_timeout_default_and_a_good_value():
    assert distributed.timeout_setting({}) == distributed.DEFAULT_TIMEOUT
    assert distributed.timeout_setting({distributed.TIMEOUT_ENV: ' '}) == distributed.DEFAULT_TIMEOUT
    assert distributed.timeout_setting({distributed.TIMEOUT_ENV: '30'}) == 30.0


def test_launch_checks_the_timeout_before_starting_anything(tmp_path, capsys, monkeypatch):
    from gluon_bertft.cli import main
    monkeypatch.setenv(distributed.TIMEOUT_ENV, 'abc')
    monkeypatch.chdir(tmp_path)
    assert main(['launch', '-n', '1', '--', 'finetune']) == 2
    assert "$GLUON_BERTFT_TIMEOUT='abc'" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('value', ['', 'file'])
def test_the_data_folder_must_be_a_folder(tmp_path, monkeypatch, value):
    (tmp_path / 'file').write_text('x')
    monkeypatch.setenv(pretrained.DATA_DIR_ENV, str(tmp_path / value) if value else '')
    with pytest.raises(PretrainedError, match=r'\$GLUON_BERTFT_DATA=.*give a folder for downloads'):
        pretrained.data_dir()
