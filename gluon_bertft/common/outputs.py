"""The one rule for what a command writes, for every command that writes (``finetune``,
``pretrain``, ``predict``, ``explain``, and any later one).

* An output is never one of the run's inputs: not the same path, not inside an input folder,
  and (a folder) not holding an input. Paths are compared resolved (symbolic links followed;
  an existing file also by identity, so a hard link counts), and the command refuses before
  any work.
* ``--out`` names a folder. It is created with its parents; an existing one is replaced as a
  whole at the end, in one step (:func:`replace_folder`), so a run leaves either the old folder
  or the new one, never a mix. It may therefore hold only what the command writes there
  (anything else would be deleted: refused). ``finetune`` keeps its ``checkpoint/`` across the
  replacement, for ``--resume``.
* ``--output`` names a file whose extension gives its format; ``-`` means standard output
  (JSON lines), and every other message then goes to standard error.
* A path ending in ``/`` is a folder and is refused where a file is wanted; an empty path is
  refused. ``-`` is refused where a folder is wanted (``--out``): it would make a folder
  named ``-``.

Every refusal is a :class:`~gluon_bertft.common.errors.ConfigError` naming the option and the
path.
"""
import contextlib
import os
import shutil

from .errors import ConfigError, cut
from .storage import atomic_path

STDOUT = '-'
# the rule in a few words, for the --help of every --out and --output
FOLDER_RULE = ('a folder, created; an existing one is replaced as a whole at the end and may '
               'hold only what this command writes; never an input')
FILE_RULE = 'a file, never an input; a path ending in / is refused'


def is_stdout(path):
    """Whether an output path means standard output (``-``)."""
    return path == STDOUT


def check_out_folder(path, option, inputs=(), names=None, keep=(), others=()):
    """Refuse, before any work, an output folder ``path`` that breaks the rule (module
    docstring): empty, the same as, inside or holding an input (``inputs``: ``(option, path)``
    pairs; ``None`` and absent paths are skipped), an existing file, in a place that cannot be
    written, or (with ``names``, the entries the command writes; ``keep``, the ones it carries
    over) an existing folder holding anything else, which replacing it would delete (the
    temporaries ``.NAME.*`` that an interrupted :func:`~gluon_bertft.common.storage.atomic_path` of
    one of these entries leaves are not refused: the replacement drops them). ``others``:
    the run's other outputs as ``(option, path)`` pairs, which ``path`` may not be, be inside
    or hold either (one would delete the other). Raises ``ConfigError`` naming ``option`` and
    ``path``."""
    _check_given(path, option, 'folder')
    if is_stdout(path):
        raise ConfigError(f'{option} -: standard output is for --output (JSON lines); {option} '
                          'names a folder (give ./- for a folder of that name)')
    _check_apart(path, option, inputs)
    _check_apart(path, option, others, role='another output of this run', present=False)
    plain = path.rstrip('/' + os.sep) or path  # 'dir/' names the folder dir
    if os.path.exists(plain) and not os.path.isdir(plain):
        raise ConfigError(f'{option} {path}: exists as a file; give a folder path ({FOLDER_RULE})')
    _check_parent(path, option)
    if names is not None and os.path.isdir(plain):
        ours = tuple(names) + tuple(keep)  # with what an interrupted atomic write left
        other = sorted(n for n in os.listdir(plain)
                       if n not in ours and not n.startswith(tuple(f'.{o}.' for o in ours)))
        if other:
            raise ConfigError(
                f'{option} {path}: holds {cut(", ".join(other))}, which this command does not '
                'write; the folder is replaced as a whole at the end, so give a new folder or '
                'one this command wrote (move those files first)')


def check_output_file(path, option, inputs=(), formats=None, stdout=False):
    """Refuse, before any work, an output file ``path`` that breaks the rule (module
    docstring): empty, ending in ``/``, ``-`` where ``stdout`` is not allowed, an existing
    folder, the same as or inside an input (``inputs``: ``(option, path)`` pairs), in a place
    that cannot be written, or (with ``formats``: ``{'.ext': format}``) of another extension.

    Returns the format: ``formats``' value for the extension (any case), ``'jsonl'`` for
    standard output, else ``None``. Raises ``ConfigError`` naming ``option`` and ``path``.
    """
    _check_given(path, option, 'file')
    if is_stdout(path):
        if not stdout:
            raise ConfigError(f'{option} -: standard output is not an output of this command; '
                              'give a file path')
        return 'jsonl'
    if path.endswith(('/', os.sep)) or (os.altsep and path.endswith(os.altsep)):
        raise ConfigError(f'{option} {path}: ends with /, which names a folder; give a file path')
    _check_apart(path, option, inputs, folder=False)
    if os.path.isdir(path):
        raise ConfigError(f'{option} {path}: exists as a folder; give a file path ({FILE_RULE})')
    extension = os.path.splitext(path)[1].lower()
    if formats is not None and extension not in formats:
        raise ConfigError(f'{option} {path}: give a file ending in {" or ".join(formats)} '
                          '(the extension gives the format)' + (', or - for standard output'
                                                                 if stdout else ''))
    _check_parent(path, option)
    return formats[extension] if formats is not None else None


@contextlib.contextmanager
def replace_folder(path, keep=()):
    """Yield a new, empty folder beside ``path`` to write the outputs into; when the block
    ends without error it replaces ``path`` (created if absent) in one step
    (:func:`~gluon_bertft.common.storage.atomic_path`), and the old folder is deleted. The entries
    named in ``keep`` (e.g. ``checkpoint``) of the old folder are carried over as hard links
    (copies where the file system has none), so they survive at every moment. On error
    ``path`` is left as it was and the new folder is removed."""
    with atomic_path(path) as tmp:
        os.makedirs(tmp)
        yield tmp
        for name in keep:
            old, new = os.path.join(path, name), os.path.join(tmp, name)
            if os.path.lexists(old) and not os.path.lexists(new):
                if os.path.isdir(old) and not os.path.islink(old):
                    shutil.copytree(old, new, symlinks=True, copy_function=_link)
                else:
                    _link(old, new)


def _link(source, target):
    """A hard link ``target`` to ``source``; a copy where links are not possible."""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)


def _check_given(path, option, kind):
    if not isinstance(path, str) or not path:
        raise ConfigError(f'{option} {path!r}: an empty path; give a {kind}')


def _check_apart(path, option, inputs, folder=True, role='an input of this run', present=True):
    """Refuse ``path`` when it is, is inside or (a ``folder``) holds one of ``inputs``
    (resolved paths; ``present``: only those that exist, the others are skipped)."""
    real = os.path.realpath(path)
    for name, given in inputs:
        if not given or (present and not os.path.exists(given)):
            continue
        source = os.path.realpath(given)
        if real == source or (os.path.exists(path) and os.path.exists(given)
                              and os.path.samefile(path, given)):
            relation = 'is'
        elif (os.path.isdir(source) or not present) and real.startswith(os.path.join(source, '')):
            relation = 'is inside'
        elif folder and source.startswith(os.path.join(real, '')):
            relation = 'holds'
        else:
            continue
        raise ConfigError(f'{option} {path}: {relation} {name} {given}, {role}'
                          + (' (an output never overwrites an input)' if present else ''))


def _check_parent(path, option):
    """Refuse ``path`` when the folders to be made for it cannot be: the nearest existing
    ancestor must be a writable folder."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # the folders to be made: the first that exists decides
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f'{option} {path}: {parent} is a file, not a folder')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f'{option} {path}: cannot write in {parent} (permission denied)')
