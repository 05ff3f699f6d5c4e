"""Issue 24's kinds, probed on the newest commands as a new user would try them (docs/bad-input.md,
"Probe of the new commands, kind by kind"): ``quantize``, ``distill``, ``export``,
``pretrain --format text``, Hugging Face task folders with the package's key and a broken
``id2label``, and the environment variables.

Each input is one ``python -m gluon_bertft`` process (its own folder as the working directory,
``PYTHONPATH`` the checkout under test, 120 s limit), judged: ``clear`` (exit 2, one ``error:``
line matching what it must name), ``right`` (exit 0 and the output checked), ``traceback``,
``silently-wrong`` (accepted bad input, a wrong output or no warning), ``half-written`` (an
output or an input changed by a refused or killed run), ``refused-valid``, ``unclear`` (exit 2
naming something else), ``hang``. Full or read-only disks are injected in the one writer
(``OSError(ENOSPC/EROFS)`` from ``open``, ``os.replace`` and MXNet's save), not made.

    python benchmarks/probe_new_commands.py CHECKOUT FIXTURES RUNDIR [-j 3] [-k SUBSTRING]
        [--skip LOG]   # FIXTURES is made first when absent; one JSON line per input, then TOTAL
"""
import concurrent.futures as cf
import json, os, re, shutil, signal, subprocess, sys, time

WT, FIX, RUN = map(os.path.abspath, sys.argv[1:4])
JOBS = int(sys.argv[sys.argv.index('-j') + 1]) if '-j' in sys.argv else 3
DONE = set(json.loads(l)['id'] for l in open(sys.argv[sys.argv.index('--skip') + 1]) if l.startswith('{')) if '--skip' in sys.argv else set()
ONLY = sys.argv[sys.argv.index('-k') + 1] if '-k' in sys.argv else ''
PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 120
# ---------------- fixtures (made once, in a process of their own) ----------------
FIXTURES = r'''
import json, os, shutil, sys
sys.path.insert(0, 'tests')
FIX = sys.argv[1]
shutil.rmtree(FIX, ignore_errors=True)
os.makedirs(FIX)
import random
from gluon_bertft.export import export
from gluon_bertft.inference import quantize
quiet = lambda *a: None
EX = 'tests/fixtures/hf_export'
shutil.copytree(f'{EX}/classify', f'{FIX}/M')
shutil.copytree(f'{EX}/classify.hf', f'{FIX}/H')
rng = random.Random(0)
words = ['the', 'a', 'cat', 'dog', 'sat', 'on', 'mat', 'movie', 'was', 'is', 'very', 'fun']
def rows(n, seed):
    r = random.Random(seed)
    out = []
    for i in range(n):
        lab = 'pos' if i % 2 else 'neg'
        w = r.sample(words, 4) + ['good' if lab == 'pos' else 'bad']
        r.shuffle(w)
        out.append(f'{" ".join(w)}\t{lab}')
    return out
def write(name, lines, enc='utf-8'):
    with open(f'{FIX}/{name}', 'w', encoding=enc, newline='') as f:
        f.write(''.join(l + '\n' for l in lines))
write('train.tsv', ['sentence\tlabel'] + rows(48, 0))
write('test.tsv', ['sentence\tlabel'] + rows(16, 1))
write('cal.tsv', ['sentence\tlabel'] + rows(40, 2))
export(f'{FIX}/M', 'mxnet', f'{FIX}/G', log=quiet)
quantize.quantize(f'{FIX}/M', f'{FIX}/cal.tsv', f'{FIX}/Q', 'naive', 64, log=quiet, options=dict(min_agreement=0.0))
from tiny_data import untrained_model
import pathlib
os.makedirs(f'{FIX}/Bdir')
untrained_model('classify', pathlib.Path(f'{FIX}/Bdir'))

import mxnet as mx
sys.path.insert(0, 'tests')
import hf_tiny
shutil.copytree(f'{FIX}/M', f'{FIX}/Mnan')
mx.npx.set_np()
p = mx.npx.load(f'{FIX}/Mnan/model.params')
k = sorted(p)[0]
a = p[k].asnumpy(); a.flat[0] = float('nan'); p[k] = mx.np.array(a)
mx.npx.save(f'{FIX}/Mnan/model.params', p)
hf_tiny.write_tiny_hf_bert(f'{FIX}/E')
hf_tiny.VOCAB = hf_tiny.VOCAB + ['extra', 'words', 'here']
hf_tiny.write_tiny_hf_bert(f'{FIX}/E2', vocab_size=len(hf_tiny.VOCAB))
'''
INJECT_CODE = r'''
"""python inject.py MODE ARGV...: the CLI with a write failure injected in the one writer.
MODE: enospc_write (the 2nd file opened for writing fails), enospc_commit (the final move),
erofs (every open for writing)."""
import builtins, errno, os, sys
mode, argv = sys.argv[1], sys.argv[2:]
code = dict(enospc_write=errno.ENOSPC, enospc_commit=errno.ENOSPC, erofs=errno.EROFS)[mode]
opened = [0]
real_open, real_replace = builtins.open, os.replace
def fake_open(file, mode_='r', *a, **k):
    if any(c in mode_ for c in 'wax') and '/.' in str(file):
        opened[0] += 1
        if mode == 'erofs' or (mode == 'enospc_write' and opened[0] >= 2):
            raise OSError(code, os.strerror(code), str(file))
    return real_open(file, mode_, *a, **k)
def fake_replace(src, dst, *a, **k):
    if mode == 'enospc_commit':
        raise OSError(code, os.strerror(code), str(dst))
    return real_replace(src, dst, *a, **k)
builtins.open = fake_open
os.replace = fake_replace
import mxnet as mx
if mode in ('enospc_write', 'erofs'):
    real_save = mx.nd.save
    def fake_save(fname, *a, **k):
        if '/.' in str(fname):
            raise mx.base.MXNetError(f'[io] Check failed: write {fname}: No space left on device')
        return real_save(fname, *a, **k)
    mx.nd.save = fake_save
from gluon_bertft import cli
sys.exit(cli.main(argv))
'''
INJECT = os.path.join(RUN, 'inject.py')
if not os.path.isdir(FIX):
    subprocess.run([PY, '-c', FIXTURES, FIX], cwd=WT, check=True, env=dict(os.environ, PYTHONPATH=WT))
os.makedirs(RUN, exist_ok=True)
with open(INJECT, 'w') as f:
    f.write(INJECT_CODE)

M, G, Q, H, B = (f'{FIX}/{n}' for n in ('M', 'G', 'Q', 'H', 'Bdir/model'))
TRAIN, TEST, CAL = f'{FIX}/train.tsv', f'{FIX}/test.tsv', f'{FIX}/cal.tsv'
CASES = []
HFMADE = os.path.join(WT, 'tests', 'fixtures', 'hf_made')


def case(cid, argv, expect, check=None, pre=None, env=None, inject=None, out=None, kill=None):
    """expect: 'ok' or a regex the error line must match. out: the output path that must be
    unchanged after an error. check(w) -> str problem or None, after exit 0."""
    CASES.append(dict(id=cid, argv=argv, expect=expect, check=check, pre=pre, env=env or {},
                      inject=inject, out=out, kill=kill))


def wr(name, text=None, data=None, enc='utf-8'):
    def make(w):
        p = os.path.join(w, name)
        if data is not None:
            open(p, 'wb').write(data)
        else:
            open(p, 'w', encoding=enc, newline='').write(text)
    return make


def fifo(name):
    return lambda w: os.mkfifo(os.path.join(w, name))


def copy(src, name, change=None):
    def make(w):
        shutil.copytree(src, os.path.join(w, name))
        if change:
            change(os.path.join(w, name))
    return make


def seq(*fs):
    return lambda w: [f(w) for f in fs]


def exists(*names):
    return lambda w: None if all(os.path.exists(os.path.join(w, n)) for n in names) else \
        f'missing {names}'


CAL_ROWS = open(CAL, encoding='utf-8').read().splitlines()
HEAD, BODY = CAL_ROWS[0], CAL_ROWS[1:]
TSV = lambda lines: '\n'.join(lines) + '\n'

# ---------------- quantize ----------------
QB = ['quantize', '--calib-mode', 'naive', '--min-agreement', '0']
q = lambda cid, args, expect, **kw: case('quantize/' + cid, QB + args, expect, **kw)
q('ok', ['--model', M, '--calibration', CAL, '--out', 'o'], 'ok', check=exists('o/model-symbol.json'))
q('model-hf-task-folder', ['--model', H, '--calibration', CAL, '--out', 'o'], 'ok', check=exists('o/model-symbol.json'))
q('model-graph', ['--model', G, '--calibration', CAL, '--out', 'o'], r'model-symbol|exported|graph')
q('model-int8', ['--model', Q, '--calibration', CAL, '--out', 'o'], r'INT8|quantized|graph')
q('model-missing', ['--model', 'nope', '--calibration', CAL, '--out', 'o'], r'nope')
q('model-file', ['--model', CAL, '--calibration', CAL, '--out', 'o'], r'cal\.tsv.*(file|folder)')
q('model-fifo', ['--model', 'p', '--calibration', CAL, '--out', 'o'], r'named pipe', pre=fifo('p'))
q('model-no-params', ['--model', 'm', '--calibration', CAL, '--out', 'o'], r'model\.params',
  pre=copy(M, 'm', lambda p: os.remove(f'{p}/model.params')))
q('model-empty-params', ['--model', 'm', '--calibration', CAL, '--out', 'o'], r'model\.params',
  pre=copy(M, 'm', lambda p: open(f'{p}/model.params', 'wb').close()))
q('model-config-list', ['--model', 'm', '--calibration', CAL, '--out', 'o'], r'config\.json',
  pre=copy(M, 'm', lambda p: open(f'{p}/config.json', 'w').write('[]')))
q('model-no-tokenizer', ['--model', 'm', '--calibration', CAL, '--out', 'o'], r'tokenizer|vocab',
  pre=copy(M, 'm', lambda p: [os.remove(f'{p}/{n}') for n in ('tokenizer.json', 'vocab.txt', 'tokenizer_config.json')]))
q('model-nan-params', ['--model', f'{FIX}/Mnan', '--calibration', CAL, '--out', 'o'], r'model\.params.*(NaN|finite)',
  )
q('book-model-ok', ['--model', B, '--calibration', f'{FIX}/Bdir/train.tsv', '--out', 'o'], 'ok', check=exists('o/model-symbol.json'))
cal = lambda cid, pre, expect, **kw: q('cal-' + cid, ['--model', M, '--calibration', 'c', '--out', 'o'], expect, pre=pre, **kw)
cal('missing', None, r'--calibration c: no such file|c: no such')
cal('empty', wr('c', ''), r'\bc\b.*(empty|0 row)')
cal('header-only', wr('c', HEAD + '\n'), r'\bc\b.*(empty|0 row|no examples)')
cal('blank-rows', wr('c', HEAD + '\n\n\n   \n\n'), r'\bc\b')
cal('wrong-format-json', wr('c', '{"a": [1, 2]}\n'), r'\bc\b')
cal('utf16-bom', wr('c', TSV(CAL_ROWS), enc='utf-16'), 'ok', check=exists('o/model-symbol.json'))
cal('utf16le-nobom', wr('c', TSV(CAL_ROWS), enc='utf-16-le'), r'\bc\b.*UTF-16')
cal('utf8-bom', wr('c', '\ufeff' + TSV(CAL_ROWS)), 'ok', check=exists('o/model-symbol.json'))
cal('extra-field', wr('c', TSV([HEAD] + BODY[:5] + [BODY[5] + '\textra'] + BODY[6:])), r'\bc:7\b')
cal('missing-field', wr('c', TSV([HEAD] + BODY[:5] + ['onlytext'] + BODY[6:])), r'\bc:7\b')
cal('invisible-only', wr('c', TSV([HEAD] + ['\u200b\u200b\tpos'] * 20)), r'\bc:2\b.*empty')
cal('one-invisible-row', wr('c', TSV([HEAD] + BODY[:3] + ['\u200b\u2060\tpos'] + BODY[3:])), r'\bc:5\b.*empty')
cal('fewer-than-batch-ok', wr('c', TSV([HEAD] + BODY[:10])), 'ok', check=exists('o/model-symbol.json'))
cal('fewer-than-min', wr('c', TSV([HEAD] + BODY[:5])), r'\bc\b.*5 row')
cal('fifo', fifo('c'), r'\bc\b.*named pipe')
cal('dev-zero', lambda w: os.symlink('/dev/zero', os.path.join(w, 'c')), r'\bc\b.*(device|not a regular)')
cal('folder', lambda w: os.mkdir(os.path.join(w, 'c')), r'\bc\b.*folder')
cal('binary', wr('c', data=bytes(range(256)) * 40), r'\bc\b')
cal('no-labels-ok', wr('c', TSV(['sentence'] + [b.split('\t')[0] for b in BODY])), 'ok', check=exists('o/model-symbol.json'))
cal('cjk-text', wr('c', TSV([HEAD] + ['这部电影非常好看\tpos'] * 20)), r'unknown|\bc\b', )
for v, e in (('0', r'--calib-rows'), ('-1', r'--calib-rows'), ('abc', r'--calib-rows'),
             ('7', r'--calib-rows 7'), ('1.5', r'--calib-rows'), ('nan', r'--calib-rows')):
    q(f'calib-rows-{v}', ['--model', M, '--calibration', CAL, '--out', 'o', '--calib-rows', v], e)
q('calib-rows-huge', ['--model', M, '--calibration', CAL, '--out', 'o', '--calib-rows', '99999999999'], 'ok',
  check=exists('o/model-symbol.json'))
q('calib-mode-bad', ['--model', M, '--calibration', CAL, '--out', 'o', '--calib-mode', 'bogus'], r'--calib-mode')
q('calib-mode-entropy', ['--model', M, '--calibration', CAL, '--out', 'o', '--calib-mode', 'entropy'], 'ok',
  check=exists('o/model-symbol.json'))
for v in ('-0.1', '1.1', 'nan', 'inf', 'abc'):
    q(f'min-agreement-{v}', ['--model', M, '--calibration', CAL, '--out', 'o', '--min-agreement', v], r'--min-agreement')
q('min-agreement-1', ['--model', M, '--calibration', CAL, '--out', 'o', '--min-agreement', '1'], 'ok',
  check=exists('o/model-symbol.json'))
q('out-is-model', ['--model', 'm', '--calibration', CAL, '--out', 'm'], r'--out m: is --model', pre=copy(M, 'm'), out='m')
q('out-a-file', ['--model', M, '--calibration', CAL, '--out', 'f'], r'--out f: exists as a file', pre=wr('f', 'x'), out='f')
q('out-inside-model', ['--model', 'm', '--calibration', CAL, '--out', 'm/q'], r'--out m/q: is inside --model', pre=copy(M, 'm'))
q('out-empty', ['--model', M, '--calibration', CAL, '--out', ''], r"--out ''")
q('out-dash', ['--model', M, '--calibration', CAL, '--out', '-'], r'--out -')
q('out-is-calibration', ['--model', M, '--calibration', 'c', '--out', 'c'], r'--out c', pre=wr('c', TSV(CAL_ROWS)), out='c')
q('out-nonempty-folder', ['--model', M, '--calibration', CAL, '--out', 'o'], r'--out o: holds',
  pre=seq(lambda w: os.mkdir(f'{w}/o'), wr('o/keep.txt', 'x')), out='o')
q('out-trailing-slash', ['--model', M, '--calibration', CAL, '--out', 'o/'], 'ok', check=exists('o/model-symbol.json'))
q('out-under-a-file', ['--model', M, '--calibration', CAL, '--out', 'f/o'], r'--out f/o', pre=wr('f', 'x'))
for mode in ('enospc_write', 'enospc_commit', 'erofs'):
    q(f'disk-{mode}', ['--model', M, '--calibration', CAL, '--out', 'o'], r'\bo\b.*(space|[Rr]ead-only)',
      inject=mode, out='o')
q('disk-enospc-replacing', ['--model', M, '--calibration', CAL, '--out', 'o'], r'\bo\b.*space',
  inject='enospc_write', out='o', pre=copy(Q, 'o'))
q('devices-gpu', ['--model', M, '--calibration', CAL, '--out', 'o', '--devices', 'gpu'], r'--devices')
q('devices-bad', ['--model', M, '--calibration', CAL, '--out', 'o', '--devices', 'tpu'], r'--devices')

# ---------------- distill ----------------
DB = ['distill', '--train', TRAIN, '--test', TEST, '--epochs', '1', '--batch-size', '16', '--devices', 'cpu',
      '--max-test-examples', '16']
d = lambda cid, args, expect, **kw: case('distill/' + cid, DB + args, expect, **kw)
ST = ['--teacher', M, '--student-blocks', '1']
d('ok', ST + ['--out', 'd'], 'ok', check=exists('d/model/model.params', 'd/result.json', 'd/teacher_outputs.npz'))
for v in ('-0.1', '1.1', 'nan', 'inf', 'abc'):
    d(f'alpha-{v}', ST + ['--out', 'd', '--alpha', v], r'--alpha')
d('alpha-0', ST + ['--out', 'd', '--alpha', '0'], 'ok', check=exists('d/result.json'))
d('alpha-1', ST + ['--out', 'd', '--alpha', '1'], 'ok', check=exists('d/result.json'))
for v in ('0', '-1', 'nan', 'inf', '1e308', '1e-320'):
    d(f'temperature-{v}', ST + ['--out', 'd', '--temperature', v], r'--temperature')
d('temperature-1e-30', ST + ['--out', 'd', '--temperature', '1e-30'], r'--temperature',
  check=None)
d('temperature-1e30', ST + ['--out', 'd', '--temperature', '1e30'], r'--temperature')
un = lambda cid, pre, expect, **kw: d('unlabelled-' + cid, ST + ['--out', 'd', '--unlabelled', 'u'], expect, pre=pre, **kw)
un('missing', None, r'\bu\b')
un('empty', wr('u', ''), r'\bu\b.*empty')
un('labelled-ok', wr('u', TSV(CAL_ROWS)), 'ok', check=exists('d/result.json'))
un('no-labels-ok', wr('u', TSV(['sentence'] + [b.split('\t')[0] for b in BODY])), 'ok', check=exists('d/result.json'))
un('wrong-columns', wr('u', TSV(['text\tfoo'] + BODY)), r'\bu\b.*sentence')
un('cjk', wr('u', TSV(['sentence'] + ['这部电影非常好看，故事也很感人'] * 20)), 'warn:unknown', check=exists('d/result.json'))
un('utf16le', wr('u', TSV(CAL_ROWS), enc='utf-16-le'), r'\bu\b.*UTF-16')
un('fifo', fifo('u'), r'\bu\b.*named pipe')
un('extra-field', wr('u', TSV([HEAD] + BODY[:3] + [BODY[3] + '\tx'] + BODY[4:])), r'\bu:5\b')
un('invisible', wr('u', TSV(['sentence'] + ['\u200b'] * 5)), r'\bu:2\b.*empty')
d('unlabelled-alpha0', ST + ['--out', 'd', '--unlabelled', CAL, '--alpha', '0'], r'--unlabelled')
te = lambda cid, teacher, expect, **kw: d('teacher-' + cid, ['--teacher', teacher, '--student-blocks', '1', '--out', 'd'], expect, **kw)
te('missing', 'nope', r'nope')
te('empty-folder', 'e', r'\be\b.*config\.json', pre=lambda w: os.mkdir(f'{w}/e'))
te('a-file', CAL, r'cal\.tsv')
te('fifo', 'p', r'named pipe', pre=fifo('p'))
te('graph', G, r'graph')
te('int8', Q, r'INT8|graph')
te('int8-no-symbol', 'qq', r'INT8|graph|model-symbol', pre=copy(Q, 'qq', lambda p: os.remove(f'{p}/model-symbol.json')))
te('hf-task-folder-ok', H, 'ok', check=exists('d/result.json'))
te('book-ok', B, 'ok', check=exists('d/result.json'))
d('teacher-hf-encoder', ['--teacher', f'{FIX}/E', '--student-blocks', '1', '--out', 'd'], r'/E\b.*(encoder|finetune --pretrained)')
d('student-blocks-and-pretrained', ST + ['--out', 'd', '--pretrained', 'random'], r'--student-blocks')
d('student-blocks-0', ['--teacher', M, '--student-blocks', '0', '--out', 'd'], r'--student-blocks')
d('student-blocks-2', ['--teacher', M, '--student-blocks', '2', '--out', 'd'], r'--student-blocks')
d('student-init-alone', ['--teacher', M, '--preset', 'bert.tiny', '--student-init', 'first', '--out', 'd'], r'--student-init')
d('student-preset-ok', ['--teacher', M, '--preset', 'bert.tiny', '--out', 'd'], 'ok', check=exists('d/result.json'))
d('student-same-tokenizer-ok', ['--teacher', M, '--pretrained', f'{FIX}/E', '--out', 'd'], 'ok', check=exists('d/result.json'))
d('student-other-tokenizer', ['--teacher', M, '--pretrained', f'{FIX}/E2', '--out', 'd'], r'tokenizer')
d('task-other', ST + ['--out', 'd', '--task', 'tag'], r'--task')
d('max-len-given', ST + ['--out', 'd', '--max-len', '16'], r'--max-len')
d('tag-column-given', ST + ['--out', 'd', '--tag-column', '1'], r'--tag-column')
d('trainable-blocks-5', ST + ['--out', 'd', '--trainable-blocks', '5'], r'--trainable-blocks')
d('lazy-embedding-student-blocks', ST + ['--out', 'd', '--lazy-embedding'], 'ok', check=exists('d/result.json'))
d('out-is-teacher', ['--teacher', 't', '--student-blocks', '1', '--out', 't'], r'--out t: is --teacher', pre=copy(M, 't'), out='t')
d('out-inside-teacher', ['--teacher', 't', '--student-blocks', '1', '--out', 't/d'], r'--out t/d: is inside', pre=copy(M, 't'), out='t/d')
d('out-is-train', ST + ['--out', TRAIN], r'--out')
d('out-dash', ST + ['--out', '-'], r'--out -')
d('out-empty', ST + ['--out', ''], r"--out ''")


def cache_case(cid, damage, expect='ok'):
    """Damage a copy of a valid run's cache; the next run must recompute or refuse."""
    def pre(w):
        src = f'{RUN}/distill/ok/d/teacher_outputs.npz'
        shutil.copy(src, f'{w}/c.npz')
        damage(f'{w}/c.npz')
    d('cache-' + cid, ST + ['--out', 'd', '--teacher-outputs', 'c.npz'], expect, pre=pre,
      check=lambda w: cache_check(w))


def cache_check(w):
    r = json.load(open(f'{w}/d/result.json'))
    ref = json.load(open(f'{RUN}/distill/ok/d/result.json'))
    return None if r['test'] == ref['test'] else f"test {r['test']} != clean run's {ref['test']}"


def npz_edit(fn):
    import numpy as onp

    def damage(p):
        with onp.load(p) as f:
            arrays = {k: f[k] for k in f.files}
        fn(arrays)
        onp.savez(p, **arrays)
    return damage


cache_case('ok-reused', lambda p: None)
cache_case('truncated', lambda p: open(p, 'r+b').truncate(100))
cache_case('garbage', lambda p: open(p, 'wb').write(b'garbage' * 50))
cache_case('empty', lambda p: open(p, 'wb').close())
cache_case('wrong-key', npz_edit(lambda a: a.__setitem__('key', a['key'].astype(str).item() + 'x')))
cache_case('no-key', npz_edit(lambda a: a.pop('key')))
cache_case('no-output0', npz_edit(lambda a: a.pop('output0')))
cache_case('nan-values', npz_edit(lambda a: a['output0'].__setitem__((0, 0), float('nan'))))
cache_case('fewer-rows', npz_edit(lambda a: a.__setitem__('output0', a['output0'][:-3])))
cache_case('wrong-width', npz_edit(lambda a: a.__setitem__('output0', a['output0'][:, :1])))
cache_case('int-dtype', npz_edit(lambda a: a.__setitem__('output0', a['output0'].astype('int64'))))
cache_case('count-3', npz_edit(lambda a: a.__setitem__('count', a['count'] * 0 + 3)))
cache_case('pickled-object', npz_edit(lambda a: a.__setitem__('output0', a['output0'].astype(object))))
d('cache-a-folder', ST + ['--out', 'd', '--teacher-outputs', 'c'], r'--teacher-outputs|\bc\b', pre=lambda w: os.mkdir(f'{w}/c'))
d('cache-is-unlabelled', ST + ['--out', 'd', '--unlabelled', 'u.tsv', '--teacher-outputs', 'u.tsv'], r'--teacher-outputs u.tsv', pre=wr('u.tsv', TSV(CAL_ROWS)), out='u.tsv')
d('cache-is-test', ST + ['--out', 'd', '--test', 't.tsv', '--teacher-outputs', 't.tsv'], r'--teacher-outputs t.tsv', pre=wr('t.tsv', open(TEST).read()), out='t.tsv')
d('cache-a-text-file', ST + ['--out', 'd', '--teacher-outputs', 'x.txt'], r'--teacher-outputs x\.txt', pre=wr('x.txt', 'notes'), out='x.txt')
d('env-train-fused-abc', ST + ['--out', 'd'], r'GLUON_BERTFT_TRAIN_FUSED_ATTENTION', env={'GLUON_BERTFT_TRAIN_FUSED_ATTENTION': 'abc'})
d('env-fused-abc', ST + ['--out', 'd'], r'GLUON_BERTFT_FUSED_ATTENTION', env={'GLUON_BERTFT_FUSED_ATTENTION': 'abc'})
d('kill-mid-run', ST + ['--out', 'd', '--epochs', '50'], 'killed', kill=25, out='d')
for mode in ('enospc_write', 'enospc_commit'):
    d(f'disk-{mode}', ST + ['--out', 'd'], r'\bd\b.*space', inject=mode, out='d')

# ---------------- export ----------------
e = lambda cid, args, expect, **kw: case('export/' + cid, ['export'] + args, expect, **kw)
e('hf-ok', ['--model', M, '--format', 'hf', '--out', 'o'], 'ok', check=exists('o/model.safetensors', 'o/config.json'))
e('mxnet-ok', ['--model', M, '--format', 'mxnet', '--out', 'o'], 'ok', check=exists('o/model-symbol.json'))
e('format-bad', ['--model', M, '--format', 'onnx', '--out', 'o'], r'--format')
e('format-empty', ['--model', M, '--format', '', '--out', 'o'], r'--format')
e('out-nonempty', ['--model', M, '--format', 'hf', '--out', 'o'], r'--out o: holds',
  pre=seq(lambda w: os.mkdir(f'{w}/o'), wr('o/notes.txt', 'x')), out='o')
e('out-previous-export-ok', ['--model', M, '--format', 'mxnet', '--out', 'o'], 'ok', pre=copy(G, 'o'),
  check=exists('o/model-symbol.json'))
e('out-is-model', ['--model', 'm', '--format', 'hf', '--out', 'm'], r'--out m: is --model', pre=copy(M, 'm'), out='m')
e('out-a-file', ['--model', M, '--format', 'hf', '--out', 'f'], r'--out f: exists as a file', pre=wr('f', 'x'), out='f')
e('out-empty', ['--model', M, '--format', 'hf', '--out', ''], r"--out ''")
e('out-dash', ['--model', M, '--format', 'hf', '--out', '-'], r'--out -')
e('out-inside-model', ['--model', 'm', '--format', 'hf', '--out', 'm/x'], r'--out m/x: is inside', pre=copy(M, 'm'))
e('out-holds-model', ['--model', 'x/m', '--format', 'hf', '--out', 'x'], r'--out x: holds', pre=seq(lambda w: os.mkdir(f'{w}/x'), copy(M, 'x/m')))
e('model-int8', ['--model', Q, '--format', 'hf', '--out', 'o'], r'graph|INT8')
e('model-graph', ['--model', G, '--format', 'mxnet', '--out', 'o'], r'graph')
e('model-hf-to-hf-ok', ['--model', H, '--format', 'hf', '--out', 'o'], 'ok', check=exists('o/model.safetensors'))
e('model-hf-to-mxnet-ok', ['--model', H, '--format', 'mxnet', '--out', 'o'], 'ok', check=exists('o/model-symbol.json'))
e('model-book-hf', ['--model', B, '--format', 'hf', '--out', 'o'], r'LayerNorm')
e('model-hf-encoder', ['--model', f'{FIX}/E', '--format', 'hf', '--out', 'o'], r'/E\b.*(encoder|finetune --pretrained)')
e('model-missing', ['--model', 'nope', '--format', 'hf', '--out', 'o'], r'nope')
e('model-fifo', ['--model', 'p', '--format', 'hf', '--out', 'o'], r'named pipe', pre=fifo('p'))
for mode in ('enospc_write', 'enospc_commit', 'erofs'):
    e(f'disk-{mode}-hf', ['--model', M, '--format', 'hf', '--out', 'o'], r'\bo\b.*(space|[Rr]ead-only)', inject=mode, out='o')
    e(f'disk-{mode}-mxnet', ['--model', M, '--format', 'mxnet', '--out', 'o'], r'\bo\b.*(space|[Rr]ead-only)', inject=mode, out='o')
e('disk-enospc-replacing', ['--model', M, '--format', 'mxnet', '--out', 'o'], r'\bo\b.*space', inject='enospc_write', out='o',
  pre=copy(G, 'o'))
EXP = f'{RUN}/export/hf-ok/o'
case('export/reread-predict', ['predict', '--model', EXP, '--text', 'a very good movie', '--devices', 'cpu', '--json'], 'ok')
case('export/reread-evaluate', ['evaluate', '--model', EXP, '--data', TEST, '--devices', 'cpu'], 'ok')
case('export/reread-explain', ['explain', '--model', EXP, '--text', 'a good movie', '--method', 'gradxinput', '--out', 'x', '--devices', 'cpu'], 'ok',
     check=exists('x/explanation.json', 'x/explanation.png'))
case('export/reread-finetune', ['finetune', '--task', 'classify', '--pretrained', EXP, '--train', TRAIN, '--test', TEST, '--epochs', '1',
     '--batch-size', '16', '--max-len', '16', '--devices', 'cpu', '--out', 'r'], 'ok', check=exists('r/model/model.params'))
case('export/reread-quantize', ['quantize', '--model', EXP, '--calibration', CAL, '--out', 'o', '--calib-mode', 'naive', '--min-agreement', '0'], 'ok',
     check=exists('o/model-symbol.json'))
case('export/reread-distill-teacher', DB + ['--teacher', EXP, '--student-blocks', '1', '--out', 'd'], 'ok', check=exists('d/result.json'))

# ---------------- pretrain --format text ----------------
PB = ['pretrain', '--format', 'text', '--preset', 'bert.tiny', '--steps', '2', '--batch-size', '4', '--max-len', '16',
      '--devices', 'cpu', '--corpus', 'c', '--out', 'p']
GOOD_TEXT = ''.join(f'The cat sat on the mat number {i}. The dog ran far away! Was it fun? Yes it was.\n' for i in range(30))
pt = lambda cid, pre, expect, args=(), **kw: case('pretrain/' + cid, PB + list(args), expect, pre=pre, **kw)
pt('ok', wr('c', GOOD_TEXT), 'ok', check=exists('p/params') if False else exists('p'))
pt('missing', None, r'\bc\b')
pt('empty', wr('c', ''), r'\bc\b.*empty')
pt('blank-lines', wr('c', '\n \n\t\n'), r'\bc\b.*empty')
pt('one-line', wr('c', 'The cat sat. The dog ran.\n'), r'\bc\b')
pt('no-sentence-end', wr('c', 'the cat sat on the mat and the dog ran\n' * 30), r'\bc\b.*two sentences')
pt('only-punctuation', wr('c', '... !!! ??? 。。。\n' * 30), r'\bc\b')
pt('binary', wr('c', data=bytes(range(256)) * 100), r'\bc\b')
pt('utf16le-nobom', wr('c', GOOD_TEXT, enc='utf-16-le'), r'\bc\b.*UTF-16')
pt('utf16-bom', wr('c', GOOD_TEXT, enc='utf-16'), r'\bc\b.*(UTF-16|encoding)')
pt('utf8-bom-ok', wr('c', '\ufeff' + GOOD_TEXT), 'ok', check=exists('p'))
pt('huge-line-ok', wr('c', 'The cat sat on the mat. ' * 200000 + '\n' + GOOD_TEXT), 'ok', check=exists('p'))
pt('invisible-only', wr('c', '\u200b\u200b. \u200b!\n' * 30), r'\bc\b')
pt('cjk-ok', wr('c', '今天天气很好。我们去公园散步！你喜欢吗？\n' * 30), 'ok', check=exists('p'))
pt('max-len-2', wr('c', GOOD_TEXT), r'--max-len', args=['--max-len', '2'])
pt('max-len-3', wr('c', GOOD_TEXT), r'--max-len|ok', args=['--max-len', '3'])
pt('max-len-5', wr('c', GOOD_TEXT), r'\bc\b.*max_len=5', args=['--max-len', '5'])
pt('fifo', fifo('c'), r'\bc\b.*named pipe')
pt('folder', lambda w: os.mkdir(f'{w}/c'), r'\bc\b.*folder')
pt('dev-null', lambda w: os.symlink('/dev/null', f'{w}/c'), r'\bc\b.*(device|regular)')
pt('out-is-corpus', wr('c', GOOD_TEXT), r'--out', args=['--out', 'c'], out='c')
pt('steps-0-ok', wr('c', GOOD_TEXT), 'ok', args=['--steps', '0'], check=exists('p'))
pt('steps-neg', wr('c', GOOD_TEXT), r'--steps', args=['--steps', '-1'])
pt('encoding-bad', wr('c', GOOD_TEXT), r'--encoding', args=['--encoding', 'nope'])

# ---------------- HF folder with our key and a broken id2label ----------------
def hf_edit(**changes):
    def change(p):
        c = json.load(open(f'{p}/config.json'))
        for k, v in changes.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        json.dump(c, open(f'{p}/config.json', 'w'))
    return copy(H, 'h', change)


for cid, changes, expect in (
        ('list', dict(id2label=['negative', 'positive']), r'id2label'),
        ('string', dict(id2label='negative'), r'id2label'),
        ('keys-1-2', dict(id2label={'1': 'negative', '2': 'positive'}), r'id2label'),
        ('three', dict(id2label={'0': 'negative', '1': 'positive', '2': 'neutral'}), r'id2label'),
        ('one', dict(id2label={'0': 'negative'}), r'id2label'),
        ('disagree-names', dict(id2label={'0': 'bad', '1': 'good'}), r'id2label'),
        ('swapped', dict(id2label={'0': 'positive', '1': 'negative'}), r'id2label'),
        ('null-values', dict(id2label={'0': None, '1': None}), r'id2label'),
        ('absent-ok', dict(id2label=None, label2id=None), 'ok'),
        ('label2id-disagrees', dict(label2id={'negative': 1, 'positive': 0}), 'ok'),
        ('key-labels-3', dict(gluon_bertft_task=dict(json.load(open(f'{H}/config.json'))['gluon_bertft_task'],
                                                      labels=['a', 'b', 'c'], label_names=None)), r'classifier|3'),
        ('key-not-object', dict(gluon_bertft_task=[1]), r'gluon_bertft_task')):
    case(f'hf-id2label/{cid}', ['predict', '--model', 'h', '--text', 'a very good movie', '--devices', 'cpu', '--json'],
         expect, pre=hf_edit(**changes))

# ---------------- environment variables ----------------
ENVS = [('GLUON_BERTFT_TRAIN_FUSED_ATTENTION', 'abc', ['finetune'], True),
        ('GLUON_BERTFT_TRAIN_FUSED_ATTENTION', '2', ['finetune'], True),
        ('GLUON_BERTFT_FUSED_ATTENTION', 'yes', ['quantize'], True),
        ('GLUON_BERTFT_ONEDNN', 'abc', ['quantize'], True),
        ('GLUON_BERTFT_FUSED_ATTENTION', 'abc', ['export'], True),
        ('GLUON_BERTFT_ONEDNN', 'x', ['export'], True),
        ('GLUON_BERTFT_FUSED_ATTENTION', 'abc', ['predict'], True),
        ('GLUON_BERTFT_SPIN', 'abc', ['predict'], False),
        ('GLUON_BERTFT_TRAIN_FUSED_ATTENTION', 'on', ['predict'], True),
        ('GLUON_BERTFT_FUSED_ATTENTION', '0', ['quantize'], None),
        ('GLUON_BERTFT_ONEDNN', '0', ['export'], None),
        ('GLUON_BERTFT_SPIN', '-5', ['predict'], False),
        ('GLUON_BERTFT_SPIN', '1e99', ['predict'], False),
        ('GLUON_BERTFT_THREADS', 'abc', ['predict'], False),
        ('GLUON_BERTFT_THREADS', '0', ['predict'], False),
        ('GLUON_BERTFT_DATA', '', ['predict'], None),
        ('GLUON_BERTFT_TIMEOUT', 'abc', ['predict'], None)]
CMD = dict(finetune=['finetune', '--task', 'classify', '--train', TRAIN, '--test', TEST, '--pretrained', M, '--epochs', '1',
                     '--batch-size', '16', '--max-len', '16', '--devices', 'cpu', '--out', 'r'],
           quantize=QB + ['--model', M, '--calibration', CAL, '--out', 'o'],
           export=['export', '--model', M, '--format', 'mxnet', '--out', 'o'],
           predict=['predict', '--model', M, '--text', 'a very good movie', '--devices', 'cpu'])
for var, value, (cmd,), error in ENVS:
    expect = var if error else ('warn:' + var if error is False else 'ok')
    case(f'env/{var}={value}/{cmd}', CMD[cmd], expect, env={var: value})


# ---------------- runner ----------------
def snapshot(path):
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        return sorted((r, tuple(sorted(f))) for r, _, f in os.walk(path))
    return open(path, 'rb').read() if os.path.isfile(path) else 'special'


SHARED = {p: open(p, 'rb').read() for p in (TRAIN, TEST, CAL)}


def run_case(c):
    w = os.path.join(RUN, c['id'])
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    if c['pre']:
        c['pre'](w)
    before = snapshot(os.path.join(w, c['out'])) if c['out'] else None
    env = dict(os.environ, PYTHONPATH=WT, **c['env'])
    argv = ([PY, INJECT, c['inject']] if c['inject'] else [PY, '-m', 'gluon_bertft']) + c['argv']
    start = time.time()
    p = subprocess.Popen(argv, cwd=w, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True, errors='replace', start_new_session=True)
    try:
        if c['kill']:
            time.sleep(c['kill'])
            os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=TIMEOUT)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = 'timeout'
    secs = time.time() - start
    lines = [l for l in err.strip().splitlines() if l.strip()]
    last = next((l for l in reversed(lines) if 'error:' in l), lines[-1] if lines else '')
    verdict, why = judge(c, w, rc, out, err, last, before)
    for p, data in SHARED.items():
        if open(p, 'rb').read() != data:
            verdict, why = 'input-overwritten', p
            open(p, 'wb').write(data)
    return dict(id=c['id'], rc=rc, verdict=verdict, why=why, last=last[:300], secs=round(secs, 1),
                argv=' '.join(c['argv'])[:300], env=c['env'])


def judge(c, w, rc, out, err, last, before):
    exp = c['expect']
    if rc == 'timeout':
        return 'hang', ''
    if 'Traceback' in err or 'Stack trace' in err or rc not in (0, 2, -9):
        return 'traceback', err.strip().splitlines()[-1][:200] if err.strip() else str(rc)
    if c['out'] and exp != 'ok':
        after = snapshot(os.path.join(w, c['out']))
        kept = {'teacher_outputs.npz', 'checkpoint'}  # distill's cache: whole, kept across runs
        if before is None and isinstance(after, list) and len(after) == 1 and \
                set(after[0][1]) <= kept:
            after = None
        if after != before:
            return 'half-written', f'{c["out"]} changed'
        temps = [n for n in os.listdir(os.path.dirname(os.path.join(w, c['out'])) or w) if n.startswith('.')]
        if temps and exp != 'killed':
            return 'half-written', f'temporaries {temps}'
    if exp == 'killed':
        return ('right', 'nothing half-written') if rc == -9 else ('unclear', f'rc {rc}')
    if exp == 'ok' or exp.startswith('warn:'):
        if rc != 0:
            return 'refused-valid', last
        if exp.startswith('warn:') and not re.search(exp[5:], out + err):
            return 'silently-wrong', 'no warning ' + exp[5:]
        problem = c['check'](w) if c['check'] else None
        return ('silently-wrong', problem) if problem else ('right', '')
    if rc == 0:
        problem = c['check'](w) if c['check'] else None
        return 'silently-wrong', 'accepted' + (f' ({problem})' if problem else '')
    if 'error:' in last and re.search(exp, last) and len(last) < 1000:
        return 'clear', ''
    return 'unclear', last


def main():
    cases = [c for c in CASES if ONLY in c['id'] and c['id'] not in DONE]
    # the cache cases and the re-read cases use other cases' outputs: run those first
    first = [c for c in cases if c['id'] in ('distill/ok', 'export/hf-ok')]
    first += [c for c in CASES if c['id'] in ('distill/ok', 'export/hf-ok') and c['id'] in DONE and not os.path.exists(os.path.join(RUN, c['id']))]
    rest = [c for c in cases if c not in first]
    results = []
    with cf.ThreadPoolExecutor(JOBS) as pool:
        for r in pool.map(run_case, first):
            results.append(r); print(json.dumps(r), flush=True)
        for r in pool.map(run_case, rest):
            results.append(r); print(json.dumps(r), flush=True)
    counts = {}
    for r in results:
        counts[r['verdict']] = counts.get(r['verdict'], 0) + 1
    print('TOTAL', len(results), json.dumps(counts), flush=True)


if __name__ == '__main__':
    main()
