"""Reader for SQuAD v1.1 JSON (``data[].paragraphs[].{context, qas[].{id, question, answers}}``).

Every question keeps all its gold answers (evaluation takes the best); each answer's
``answer_start`` must point at its text in the passage. Errors name the file, the line of
the question's id and its place in the JSON.
"""
import collections
import json

from ..common.errors import DataError, shorten
from ..common.files import blank, json_object, parse_json, read_text

Question = collections.namedtuple('Question', 'qid question context answers where')
Answer = collections.namedtuple('Answer', 'text start')


def _where(path, raw, qid, place):
    pos = raw.find(json.dumps(qid)) if isinstance(qid, (str, int)) else -1
    line = f':{raw.count(chr(10), 0, pos) + 1}' if pos >= 0 else ''
    return f'{path}{line} (question {qid}, {place})'


def _answers(qa, context, fail, required=True):
    answers = qa.get('answers', [])
    if not isinstance(answers, list):
        raise fail(f'"answers" is {type(answers).__name__}, not a list')
    out = []
    for k, ans in enumerate(answers):
        text, start = (ans.get('text'), ans.get('answer_start')) if isinstance(ans, dict) else (None, None)
        if (not isinstance(text, str) or not text or isinstance(start, bool)
                or not isinstance(start, int) or start < 0):
            raise fail(f'answers[{k}] needs a non-empty "text" and an integer "answer_start" >= 0')
        found = context[start:start + len(text)]
        if found != text:
            raise fail(f'answers[{k}] {shorten(text)} does not match the passage at '
                       f'answer_start={start}, which reads {shorten(found)}')
        out.append(Answer(text, start))
    if not out and required:
        raise fail('no answer (SQuAD v1.1 questions all have one)')
    return out


def _list(value, what, where):
    if not isinstance(value, list):
        raise DataError(f'{where}: {what} is {type(value).__name__}, not a list')
    return value


def read_squad(path, answers_required=True, encoding='utf-8'):
    """The questions of a SQuAD v1.1 file, each with its passage and gold answers (which may
    be absent when not ``answers_required``: prediction). Every field's type is checked;
    errors name the file, the line of the question's id and its place in the JSON."""
    raw = read_text(path, encoding)
    top = parse_json(raw, path)
    if not isinstance(top, dict) or 'data' not in top:
        raise DataError(f'{path}: not SQuAD JSON (no top-level "data" list)')
    questions = []
    for a, article in enumerate(_list(top['data'], '"data"', path)):
        article = json_object(article, f'{path} (data[{a}])')
        for p, para in enumerate(_list(article.get('paragraphs', []), '"paragraphs"', f'{path} (data[{a}])')):
            para = json_object(para, f'{path} (data[{a}].paragraphs[{p}])')
            context = para.get('context')
            for q, qa in enumerate(_list(para.get('qas', []), '"qas"', f'{path} (data[{a}].paragraphs[{p}])')):
                place = f'data[{a}].paragraphs[{p}].qas[{q}]'
                qa = json_object(qa, f'{path} ({place})')
                qid = qa.get('id')
                # the line is looked up only for an error: a search per question is slow
                fail = lambda msg: DataError(f'{_where(path, raw, qid, place)}: {msg}')
                if not isinstance(context, str) or blank(context):
                    raise fail('the question has no passage ("context" is missing or empty)')
                question = qa.get('question')
                if not isinstance(question, str) or blank(question):
                    raise fail('empty or missing "question"')
                questions.append(Question(qid, question, context,
                                          _answers(qa, context, fail, answers_required),
                                          f'{path} ({place})'))
    if not questions:
        raise DataError(f'{path}: no questions')
    return questions
