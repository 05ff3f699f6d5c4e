"""The package's layout rules (docs/architecture.md): no import circles, no import from a lower
layer up, and task names compared only inside ``tasks/``."""
import ast
import os
import re

from conftest import ROOT

PACKAGE = os.path.join(ROOT, 'gluon_bertft')
# lowest first: a module may import its own layer and the layers below it
LAYERS = ('common', 'data', 'models', 'training', 'tasks', 'inference', 'top')


def layer(module):
    """The layer of a dotted module under gluon_bertft ('' is the package itself)."""
    first = module.split('.')[0]
    return first if first in LAYERS else 'top'


def package_imports():
    """``{module: {imported module, ...}}`` for every module of the package, from its code
    (imports inside functions too): modules named relative to the package."""
    graph = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, '.')
            is_init = rel.endswith('__init__')
            module = rel[:-len('.__init__')] if rel.endswith('.__init__') else rel
            module = '' if module == '__init__' else module
            graph[module] = _imports(path, module, is_init)
    return graph


def _imports(path, module, is_init):
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = module.split('.') if module else []
            base = parts if is_init else parts[:-1]
            base = base[:len(base) - (node.level - 1)]
            target = '.'.join(base + ([node.module] if node.module else []))
            for alias in node.names:  # ``from . import storage``: a submodule
                sub = f'{target}.{alias.name}' if target else alias.name
                found.add(sub if _is_module(sub) else target)
        elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('gluon_bertft.'):
            found.add(node.module[len('gluon_bertft.'):])
    found.discard('')
    return found


def _is_module(dotted):
    path = os.path.join(PACKAGE, *dotted.split('.'))
    return os.path.isfile(path + '.py') or os.path.isdir(path)


def test_no_module_imports_from_a_higher_layer():
    upward = sorted(f'{m or "gluon_bertft"} ({layer(m)}) imports {t} ({layer(t)})'
                    for m, targets in package_imports().items() for t in targets
                    if m and LAYERS.index(layer(t)) > LAYERS.index(layer(m)))
    assert upward == []


def test_no_import_circles():
    imports = package_imports()
    graph = {m: {t for t in ts if t in imports} for m, ts in imports.items() if m}
    circles = []
    state = {}

    def visit(node, stack):
        state[node] = 'open'
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 'open':
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The rule itself: a model module importing the training layer is reported."""
    path = tmp_path / 'x.py'
    path.write_text('from ..training.loop import train\nfrom . import bert\n')
    assert _imports(str(path), 'models.x', False) == {'training.loop', 'models.bert'}
    assert LAYERS.index(layer('training.loop')) > LAYERS.index(layer('models.x'))


TASK_NAME_COMPARISON = re.compile(
    r"task\.name ==|== *'(qa|tag|snli|classify|pair-classify|regress)'|CLASSIFIERS")


def test_task_names_are_compared_only_inside_tasks():
    """Outside ``tasks/`` no code compares a task's name: task rules are members of the task
    classes (the saved-config default ``snli`` of models written before 0.2 lies in tasks/)."""
    hits = []
    for root, _, files in os.walk(PACKAGE):
        if os.path.relpath(root, PACKAGE).split(os.sep)[0] == 'tasks':
            continue
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                for n, line in enumerate(open(path, encoding='utf-8'), 1):
                    if TASK_NAME_COMPARISON.search(line):
                        hits.append(f'{os.path.relpath(path, ROOT)}:{n}: {line.strip()}')
    assert hits == []


# the book's signatures and the book-style keyword entry points keep their parameters
BOOK_SIGNATURES = {'finetune_snli', 'pretrain_bert', 'load_pretrained_model', '__init__'}


def functions():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
                    if isinstance(node, ast.FunctionDef):
                        yield os.path.relpath(path, ROOT), node


def test_no_function_runs_over_60_lines_or_takes_over_9_parameters():
    """Docstrings not counted; the book's own signatures excepted (BOOK_SIGNATURES)."""
    too_big = []
    for path, node in functions():
        body = node.body
        doc = (body[0].end_lineno - body[0].lineno + 1 if isinstance(body[0], ast.Expr)
               and isinstance(getattr(body[0], 'value', None), ast.Constant) else 0)
        lines = node.end_lineno - node.lineno + 1 - doc
        a = node.args
        params = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ('self', 'cls')]
        if lines > 60 or (len(params) > 9 and node.name not in BOOK_SIGNATURES):
            too_big.append(f'{path}:{node.lineno} {node.name}: {lines} lines, {len(params)} parameters')
    assert too_big == []
