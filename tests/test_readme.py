"""Every ``python -m gluon_bertft ...`` command the README shows parses with the CLI's parser."""
import os
import re
import shlex

import pytest

from gluon_bertft.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands():
    text = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    text = re.sub(r'\\\n\s*', ' ', text)  # shell line continuations
    found = re.findall(r'python -m gluon_bertft ((?:[^`\n#]|"[^"\n]*")+)', text)
    return sorted({c.strip() for c in found if not c.startswith(('launch', '...'))})


def test_the_readme_shows_commands_of_every_kind():
    kinds = {shlex.split(c)[0] for c in readme_commands()}
    assert {'finetune', 'evaluate', 'predict', 'explain', 'pretrain'} <= kinds, kinds


@pytest.mark.parametrize('command', readme_commands())
def test_readme_command_parses(command, capsys):
    if '--help' in command:
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args(shlex.split(command))
        assert stop.value.code == 0
        return
    args = build_parser().parse_args(shlex.split(command))
    assert args.command == shlex.split(command)[0]
