"""Tasks as Hugging Face's task models see them (``transformers``' ``BertFor*`` configs).

A task's class names its Hugging Face model in ``HF_HEAD``: ``(architecture, problem_type)``.
:func:`hf_fields` gives what an exported ``config.json`` says of the task (``architectures``,
``problem_type``, ``id2label``/``label2id`` with the display names), and keeps the task's own
config under :data:`EXPORT_KEY` (``PretrainedConfig`` keeps unknown keys, so a folder saved
again by transformers still has it). :func:`task_from_hf` reads it back, or, for a folder made
elsewhere, the task that :data:`IMPORTED` gives its architecture and ``problem_type``.
"""
import copy
import re

from ..common.errors import PretrainedError, shorten
from ..data import conll
from . import make_task, task_from_config

EXPORT_KEY = 'gluon_bertft_task'  # the task's config.json fields, inside HF's config.json
MAX_LEN = 512  # tokens per example of a task made elsewhere, at most its positions
# (architecture, problem_type) of a folder made elsewhere -> the task that reads it
IMPORTED = {('BertForSequenceClassification', 'single_label_classification'): 'classify',
            ('BertForSequenceClassification', 'regression'): 'regress',
            ('BertForTokenClassification', None): 'tag',
            ('BertForQuestionAnswering', None): 'qa'}
MULTI_LABEL = ('problem_type "multi_label_classification" is not supported: the package\'s '
               'classifiers choose one class per example (softmax), a multi-label model scores '
               'each class on its own (sigmoid)')
DEFAULT_NAME = re.compile(r'LABEL_(\d+)$')  # transformers' name of a class it was not told


def hf_fields(task, num_outputs):
    """The ``config.json`` fields of ``task`` as a ``BertFor*`` model with ``num_outputs``
    outputs per position: ``architectures``, ``problem_type`` (classification and regression),
    ``id2label``/``label2id`` (display names; ``LABEL_i`` where the task has no classes, as
    transformers names them) and :data:`EXPORT_KEY` (the task's config but the architecture,
    which ``config.json`` itself gives). ``PretrainedError`` for a task without
    a Hugging Face model (``HF_HEAD`` None)."""
    if type(task).HF_HEAD is None:
        raise PretrainedError(f'--task {task.name}: no Hugging Face task model has its layers')
    architecture, problem = type(task).HF_HEAD
    names = task.display_labels if task.config.get('labels') else \
        [f'LABEL_{i}' for i in range(num_outputs)]
    if len(names) != num_outputs:
        raise PretrainedError(f'the model has {num_outputs} outputs but {len(names)} labels')
    fields = dict(architectures=[architecture], id2label={str(i): n for i, n in enumerate(names)},
                  label2id={n: i for i, n in enumerate(names)})
    if problem is not None:
        fields['problem_type'] = problem
    fields[EXPORT_KEY] = {k: copy.deepcopy(v) for k, v in task.config.items() if k != 'bert'}
    return fields


def task_from_hf(stored, where, max_positions):
    """The task of a Hugging Face task folder's ``config.json`` (``stored``, read from
    ``where``; ``max_positions``: its ``max_position_embeddings``).

    A folder exported here has the task's config (:data:`EXPORT_KEY`); another is read as
    :data:`IMPORTED` says, with ``max_len`` ``min(512, max_positions)``, the task's other
    defaults, and ``id2label``'s names as labels (transformers' ``LABEL_i`` is stored as
    ``i``, shown as ``LABEL_i``; tags are IOB spans when every name is ``O``, ``B-X`` or
    ``I-X``, else plain tags).

    Raises ``PretrainedError`` naming ``where`` and the field: ``architectures`` not one
    head the package has, a multi-label ``problem_type``, a malformed ``id2label``, or (with
    :data:`EXPORT_KEY`) an ``id2label`` whose names, in order, are not the task's display
    labels (``label2id`` is not read, as transformers does not read it for outputs).
    """
    archs = stored.get('architectures')
    known = sorted({arch for arch, _ in IMPORTED})
    if not (isinstance(archs, list) and len(archs) == 1 and archs[0] in known):
        raise PretrainedError(f'{where}: "architectures" is {shorten(archs)}; a task folder names '
                              f'one of {", ".join(known)} (a BertModel without a task layer is '
                              'a pretrained encoder: give it to finetune --pretrained)')
    problem = stored.get('problem_type')
    if problem == 'multi_label_classification':
        raise PretrainedError(f'{where}: {MULTI_LABEL}')
    if EXPORT_KEY in stored:
        return _exported(stored, where, archs[0])
    if archs[0] == 'BertForSequenceClassification':
        regression = problem == 'regression' or (problem is None and len(_labels(stored, where)) == 1)
        problem = 'regression' if regression else 'single_label_classification'
    elif problem is not None:
        raise PretrainedError(f'{where}: "problem_type" is {shorten(problem)}; {archs[0]} takes none')
    task = make_task(IMPORTED[archs[0], problem], max_len=min(MAX_LEN, max_positions))
    if 'label_names' in type(task).OPTIONS:  # the tasks with classes
        _set_labels(task, _labels(stored, where))
    else:
        task.config['labels'] = None
    return task_from_config(task.config, where)


def _exported(stored, where, architecture):
    """The task kept under :data:`EXPORT_KEY`, checked, of ``architecture``'s head."""
    if not isinstance(stored[EXPORT_KEY], dict):
        raise PretrainedError(f'{where}: "{EXPORT_KEY}" is {shorten(stored[EXPORT_KEY])}, not a '
                              'JSON object (the task that export --format hf wrote)')
    task = task_from_config(stored[EXPORT_KEY], f'{where}: "{EXPORT_KEY}"')
    if type(task).HF_HEAD is None or type(task).HF_HEAD[0] != architecture:
        raise PretrainedError(f'{where}: "architectures" {architecture} does not fit '
                              f'"{EXPORT_KEY}" (task {task.name})')
    if 'id2label' in stored:  # what transformers shows: it must say what the task says
        names = _labels(stored, where)
        if task.config.get('labels') and names != task.display_labels:
            raise PretrainedError(
                f'{where}: "id2label" {shorten(names)} does not agree with the labels of '
                f'"{EXPORT_KEY}" {shorten(task.display_labels)} (class i is the classifier\'s '
                f'row i); correct "id2label", or remove "{EXPORT_KEY}" to read the folder as '
                'transformers does (its names, default task options)')
    return task


def _labels(stored, where):
    """The class names by id of ``id2label`` (transformers' two ``LABEL_i`` if absent)."""
    id2label = stored.get('id2label', {'0': 'LABEL_0', '1': 'LABEL_1'})
    ok = isinstance(id2label, dict) and sorted(id2label, key=str) == sorted(
        map(str, range(len(id2label))), key=str) and all(
        isinstance(v, str) and v for v in id2label.values())
    if not ok or len(set(id2label.values())) != len(id2label):
        raise PretrainedError(f'{where}: "id2label" is {shorten(id2label)}; expected an object '
                              'of "0".."n-1" -> distinct names')
    return [id2label[str(i)] for i in range(len(id2label))]


def _set_labels(task, names):
    """``labels`` (and ``label_names`` for transformers' ``LABEL_i``) and, for tags, the scheme."""
    if all(DEFAULT_NAME.match(n) and DEFAULT_NAME.match(n).group(1) == str(i)
           for i, n in enumerate(names)):
        task.config['labels'] = [str(i) for i in range(len(names))]
        task.config['label_names'] = dict(zip(task.config['labels'], names))
    else:
        task.config['labels'] = list(names)
    if 'tag_scheme' in task.config['reader']:
        iob = all(conll.is_iob_tag(t) for t in task.config['labels'])
        task.config['reader']['tag_scheme'] = 'iob' if iob else 'plain'

