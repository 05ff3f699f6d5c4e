"""Span question answering inputs: (question, passage) -> windows of BERT arrays, and back.

As in §16.6 the question is segment A and the passage segment B:
``<cls> question <sep> passage window <sep>``. A passage longer than the room left by the
question is cut into windows that start every ``stride`` tokens, so an answer up to
``room - stride + 1`` tokens long lies whole in some window. For training a window is kept
only if it holds the whole answer; for evaluation every window is scored and a question's
answer is its best span over all windows.
"""
import numpy as onp



def answer_tokens(spans, start, end):
    """First and last token of the character range ``[start, end)``; None if no token is in it."""
    inside = [k for k, (_, s, e) in enumerate(spans) if s < end and e > start]
    return (inside[0], inside[-1]) if inside else None


def window_starts(num_tokens, room, stride):
    """Start of every window of ``room`` tokens, ``stride`` apart, until the passage is covered."""
    starts = [0]
    while starts[-1] + room < num_tokens:
        starts.append(starts[-1] + stride)
    return starts


class WindowedQA:
    """Windows of encoded (question, passage) pairs: the arrays both tokenizations share.

    Attributes: ``all_token_ids``, ``all_segments`` (int32 ``(w, max_len)``), ``valid_lens``
    (float32 ``(w,)``), ``labels`` = (start, end) float32 ``(w,)`` positions of the first gold
    answer (0, the ``<cls>``, where it is not in the window); ``window_question`` /
    ``window_start`` / ``window_offset`` (int64 ``(w,)``) map a window back to its question,
    first passage token, and the position of that token; ``spans[q]`` are the passage tokens'
    character offsets ``(start, end)`` in the passage.
    """

    def _build(self, encoded, max_len, stride, specials, train, log):
        """``encoded``: per question ``(question ids, passage ids, spans, answer token range or
        None)``; ``specials``: the ``(cls, sep, pad)`` ids."""
        cls, sep, pad = specials
        rows, meta, labels, self.spans, dropped = [], [], [], [], 0
        if max_len < 4:
            raise ValueError(f'max_len={max_len}: QA needs <cls>, <sep>, <sep> and a passage token')
        for qi, (q_ids, c_ids, spans, target) in enumerate(encoded):
            self.spans.append(spans)
            q_ids = q_ids[:max_len - 4]  # a question too long for max_len leaves one token
            room = max_len - len(q_ids) - 3
            offset, kept = len(q_ids) + 2, False
            # the defaults work together: a long question shortens the window step
            for start in window_starts(len(spans), room, min(stride, room)):
                end = min(start + room, len(spans))
                inside = target is not None and start <= target[0] and target[1] < end
                if train and not inside:
                    continue
                kept = True
                rows.append([cls] + q_ids + [sep] + c_ids[start:end] + [sep])
                meta.append((qi, start, offset))
                # a window without the answer points at <cls>, which the head never chooses
                labels.append((target[0] - start + offset, target[1] - start + offset) if inside
                              else (0, 0))
            if train and not kept:
                dropped += 1
        if dropped:
            log(f'{dropped} of {len(encoded)} training questions dropped: their answer is in no '
                f'window (answer longer than the window overlap, or no token in it)')
        n = len(rows)
        self.all_token_ids = onp.full((n, max_len), pad, dtype=onp.int32)
        self.all_segments = onp.zeros((n, max_len), dtype=onp.int32)
        self.valid_lens = onp.array([len(r) for r in rows], dtype=onp.float32)
        for w, (row, (_, _, offset)) in enumerate(zip(rows, meta)):
            self.all_token_ids[w, :len(row)] = row
            self.all_segments[w, offset:len(row)] = 1
        self.window_question, self.window_start, self.window_offset = (
            onp.array([m[k] for m in meta], dtype=onp.int64).reshape(n) for k in range(3))
        positions = onp.array(labels, dtype=onp.float32).reshape(n, 2)
        self.labels = (positions[:, 0].copy(), positions[:, 1].copy())

    def __len__(self):
        return len(self.valid_lens)


def first_answer(question, spans):
    """Token range of ``question``'s first gold answer over the passage ``spans``; None if none."""
    if not question.answers:
        return None
    ans = question.answers[0]
    return answer_tokens([(None, s, e) for s, e in spans], ans.start, ans.start + len(ans.text))


class QADataset(WindowedQA):
    """:class:`WindowedQA` of ``questions`` through ``tokenizer`` (the protocol of
    :mod:`.words`): ``[CLS] question [SEP] passage window [SEP]``, the question cut to
    ``max_query_len`` tokens, windows of ``max_len - len(question) - 3`` passage tokens every
    ``stride``; with ``train`` only the windows that hold the whole first gold answer."""

    def __init__(self, questions, tokenizer, max_len, stride, max_query_len=64, train=False,
                 log=print):
        self._build(tokenizer.encode_qa(questions, max_query_len), max_len, stride,
                    tokenizer.specials, train, log)


def best_spans(dataset, outputs, num_questions, max_answer_len=30):
    """Best ``(score, first, last, window)`` passage-token span per question over its windows.

    ``outputs[w]`` = (start scores, end scores) of window ``w`` (host arrays over positions);
    a span has ``first <= last < first + max_answer_len``. None for a question with no window.
    """
    best = [None] * num_questions
    for w, (start_scores, end_scores) in enumerate(outputs):
        qi, first, offset = (int(a[w]) for a in (dataset.window_question, dataset.window_start,
                                                 dataset.window_offset))
        stop = int(dataset.valid_lens[w]) - 1  # the final <sep>
        s, e = start_scores[offset:stop], end_scores[offset:stop]
        # (n,) x (n,) -> (n, n): score of the span (i, j), kept where i <= j < i + max_answer_len
        total = s[:, None] + e[None, :]
        i, j = onp.indices(total.shape)
        total = onp.where((j >= i) & (j < i + max_answer_len), total, -onp.inf)
        i, j = onp.unravel_index(onp.argmax(total), total.shape)
        if best[qi] is None or total[i, j] > best[qi][0]:
            best[qi] = (float(total[i, j]), first + int(i), first + int(j), w)
    return best


def span_text(context, spans, first, last):
    """The passage text from the first character of token ``first`` to the last of ``last``."""
    return context[spans[first][0]:spans[last][1]]
