"""Reader for SQuAD v1.1 JSON (``data[].paragraphs[].{context, qas[].{id, question, answers}}``).

Every question keeps all its gold answers (evaluation takes the best); each answer's
``answer_start`` must point at its text in the passage. Errors name the file, the line of
the question's id and its place in the JSON.
"""
import collections
import json

from ..errors import DataError

Question = collections.namedtuple('Question', 'qid question context answers where')
Answer = collections.namedtuple('Answer', 'text start')


def _where(path, raw, qid, place):
    pos = raw.find(json.dumps(qid)) if qid is not None else -1
    line = f':{raw.count(chr(10), 0, pos) + 1}' if pos >= 0 else ''
    return f'{path}{line} (question {qid}, {place})'


def _answers(qa, context, fail, required=True):
    answers = []
    for k, ans in enumerate(qa.get('answers') or []):
        text, start = (ans.get('text'), ans.get('answer_start')) if isinstance(ans, dict) else (None, None)
        if not isinstance(text, str) or not text or not isinstance(start, int):
            raise fail(f'answers[{k}] needs a non-empty "text" and an integer "answer_start"')
        found = context[start:start + len(text)]
        if found != text:
            raise fail(f'answers[{k}] {text!r} does not match the passage at '
                       f'answer_start={start}, which reads {found!r}')
        answers.append(Answer(text, start))
    if not answers and required:
        raise fail('no answer (SQuAD v1.1 questions all have one)')
    return answers


def read_squad(path, answers_required=True):
    """The questions of a SQuAD v1.1 file, each with its passage and gold answers (which may
    be absent when not ``answers_required``: prediction)."""
    with open(path, 'rb') as f:
        try:
            raw = f.read().decode('utf-8')
        except UnicodeDecodeError as e:
            raise DataError(f'{path}: byte {e.start} is not valid UTF-8 (SQuAD JSON is UTF-8)') from None
    try:
        data = json.loads(raw)['data']
    except json.JSONDecodeError as e:
        raise DataError(f'{path}:{e.lineno}: invalid JSON ({e.msg})') from None
    except (KeyError, TypeError):
        raise DataError(f'{path}: not SQuAD JSON (no top-level "data" list)') from None
    questions = []
    for a, article in enumerate(data):
        for p, para in enumerate(article.get('paragraphs', [])):
            context = para.get('context')
            for q, qa in enumerate(para.get('qas', [])):
                place = f'data[{a}].paragraphs[{p}].qas[{q}]'
                # the line is looked up only for an error: a search per question is slow
                fail = lambda msg: DataError(f'{_where(path, raw, qa.get("id"), place)}: {msg}')
                if not isinstance(context, str) or not context.strip():
                    raise fail('the question has no passage ("context" is missing or empty)')
                question = qa.get('question')
                if not isinstance(question, str) or not question.strip():
                    raise fail('empty or missing "question"')
                questions.append(Question(qa.get('id'), question, context,
                                          _answers(qa, context, fail, answers_required), f'{path} ({place})'))
    if not questions:
        raise DataError(f'{path}: no questions')
    return questions
