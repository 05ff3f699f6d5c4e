"""Readers for labelled text: TSV/CSV/JSONL tables and one-sentence-per-line files.

Every reader returns a list of ``Row(texts, label, where)``: the text column(s) as a tuple of
one or two strings, the label as the file spells it (a string), and ``'file:line'`` so that
later checks (an unknown label, a score that is no number) can name the line.
"""
import collections
import csv
import json
import os

from ..common.errors import DataError, shorten
from ..common.files import (Stdin, blank, decoded_lines, extension, invisible, json_object,
                            parse_json)

csv.field_size_limit(2 ** 31 - 1)  # long texts are valid input (the default limit is 128 KiB)

Row = collections.namedtuple('Row', 'texts label where')
FORMATS = ('tsv', 'csv', 'jsonl', 'lines')


def guess_format(path):
    return {'.csv': 'csv', '.jsonl': 'jsonl', '.json': 'jsonl'}.get(extension(path), 'tsv')


def _column_index(spec, header, path):
    if isinstance(spec, int) or spec.isdigit():
        return int(spec)
    if header is None:
        raise DataError(f'{path}: column {spec!r} is a name but the file is read without a header '
                        f'(give 0-based column numbers)')
    if spec not in header:
        raise DataError(f'{path}:1: no column named {shorten(spec)} in the header '
                        f'{shorten(header, 200)}')
    return header.index(spec)


def read_table(path, text_columns=('sentence',), label_column='label', fmt=None, header=None,
               encoding='utf-8'):
    """Rows of a TSV (no quoting), CSV (quoted fields) or JSONL file.

    ``text_columns`` (one or two) and ``label_column`` are header names or 0-based column
    numbers (JSONL: keys). ``header``: whether line 1 is a header; by default it is when a
    column is given by name. Blank lines are skipped; a row whose field count differs from the
    header's (without a header: the first row's) is an error naming its line (an unquoted tab
    or comma inside a text would otherwise shift or cut it), and so is an empty text.
    """
    fmt = fmt or guess_format(path)
    lines = decoded_lines(path, encoding)
    if fmt == 'jsonl':
        return _read_jsonl(path, lines, text_columns, label_column)
    if fmt not in ('tsv', 'csv'):
        raise ValueError(f'format {fmt!r}: read_table reads tsv, csv or jsonl')
    options = dict(delimiter='\t', quoting=csv.QUOTE_NONE) if fmt == 'tsv' else {}
    reader = csv.reader(lines, **options)
    columns = list(text_columns) + ([label_column] if label_column is not None else [])
    if header is None:
        header = any(not (isinstance(c, int) or c.isdigit()) for c in columns)
    names = next(reader, None) if header else None
    if header and names is None:
        raise DataError(f'{path}: the file is empty (no header line)')
    indices = [_column_index(c, names, path) for c in columns]
    rows, width = [], len(names) if names else None
    for row in reader:
        where = f'{path}:{reader.line_num}'
        if not row:
            continue
        if len(row) <= max(indices):
            raise DataError(f'{where}: {len(row)} column(s), but column {max(indices)} '
                            f'({columns[indices.index(max(indices))]!r}) is read')
        width = width or len(row)
        if len(row) != width:
            inside = ('a tab inside a text? TSV has no quoting: use CSV with quoted fields'
                      if fmt == 'tsv' else 'a comma inside an unquoted text? quote that field')
            raise DataError(f'{where}: {len(row)} fields, but the '
                            f'{"header" if names else "first row"} has {width} ({inside})')
        n = len(text_columns)
        rows.append(_row([row[i] for i in indices[:n]], row[indices[n]] if len(indices) > n
                         else None, where))
    return rows


def _read_jsonl(path, lines, text_columns, label_column):
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f'{path}:{lineno}'
        obj = json_object(parse_json(line, path, lineno), where)
        values = [json_text(obj, key, where) for key in text_columns]
        label = None if label_column is None else json_label(obj, label_column, where)
        rows.append(_row(values, label, where))
    return rows


def json_text(obj, key, where):
    """The text in field ``key`` of a JSON object: a string (a number is taken as its text)."""
    if key not in obj:
        raise DataError(f'{where}: no field {shorten(key)} (fields: {shorten(sorted(obj), 120)})')
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f'{where}: field {shorten(key)} is {json.dumps(value)[:40]}, not a text')
    return str(value)


def json_label(obj, key, where):
    """The label in field ``key``: a string or a number (``1`` and ``1.0`` are one class);
    null, booleans, lists and objects are refused."""
    if key not in obj:
        raise DataError(f'{where}: no label field {shorten(key)} (fields: {shorten(sorted(obj), 120)})')
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f'{where}: label field {shorten(key)} is {json.dumps(value)[:40]}; '
                        'expected a string or a number')
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _row(texts, label, where):
    for i, text in enumerate(texts):
        if blank(text):
            raise DataError(f'{where}: empty text in text column {i + 1}{invisible(text)}')
    if label is None:  # an unlabelled row (prediction)
        return Row(tuple(texts), None, where)
    if not label.strip():
        raise DataError(f'{where}: empty label')
    return Row(tuple(texts), label.strip(), where)


def read_lines(paths, encoding='utf-8'):
    """Rows of one-sentence-per-line files, labelled by each file's extension
    (``rt-polarity.pos`` -> ``'pos'``; standard input, which has none: unlabelled, label
    None); blank lines are skipped."""
    rows = []
    for path in paths:
        label = None if isinstance(path, Stdin) else os.path.splitext(path)[1].lstrip('.')
        if label == '':
            raise DataError(f'{path}: no extension to take the label from (e.g. name.pos)')
        for lineno, line in enumerate(decoded_lines(path, encoding), 1):
            if line.strip():
                rows.append(Row((line.strip(),), label, f'{path}:{lineno}'))
    return rows


def read_labelled(paths, fmt=None, text_columns=('sentence',), label_column='label', header=None,
                  encoding='utf-8'):
    """Rows of one table file, or of several ``fmt='lines'`` files (a comma-separated string
    or a list)."""
    if isinstance(paths, str):
        paths = paths.split(',') if fmt == 'lines' and not isinstance(paths, Stdin) else [paths]
    if fmt == 'lines':
        return read_lines(paths, encoding)
    if len(paths) != 1:
        raise ValueError(f'{paths}: several files are read only with format lines')
    return read_table(paths[0], text_columns, label_column, fmt, header, encoding)
