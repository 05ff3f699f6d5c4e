"""Reading data files: one place for encodings, byte-order marks, JSON values of the wrong
type, and errors that name the file and line (and point at ``--encoding``)."""
import codecs
import json
import os
import stat
import sys
import unicodedata

from .errors import ConfigError, DataError

HINT = "give the file's encoding, e.g. --encoding cp1252"


def check_encoding(encoding):
    """The codec name of ``encoding``; ``ConfigError`` naming ``--encoding`` unless Python
    knows it as a text encoding (``base64`` or ``rot13`` are codecs, but not of bytes to text)."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        info = None
    if info is None or not getattr(info, '_is_text_encoding', True):
        raise ConfigError(f'--encoding {str(encoding)[:40]}: not a text encoding Python knows '
                          '(e.g. utf-8, cp1252, latin-1)')
    return info.name


def check_regular(path, error=DataError, folder_ok=False):
    """``error`` naming ``path`` if it exists but is not a regular file (or, with
    ``folder_ok``, a folder): reading a named pipe, a socket or a device blocks or never ends.
    An absent path passes: whoever opens it says so."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return
    kind = ('a named pipe' if stat.S_ISFIFO(mode) else 'a socket' if stat.S_ISSOCK(mode)
            else 'a device' if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 'not a file')
    if stat.S_ISDIR(mode):
        kind = 'a folder'
    raise error(f'{path}: {kind}, not a regular file{" or folder" if folder_ok else ""}')


def blank(text):
    """Whether ``text`` has nothing visible in it: empty, or only separators (spaces), control,
    format (zero-width, byte-order mark), unassigned or private-use characters (Unicode
    categories Z and C). Such text is refused as empty text everywhere (readers and raw input):
    the tokenizers would make nothing, or only ``<unk>``, of it."""
    return not any(unicodedata.category(ch)[0] not in 'CZ' for ch in text)


def invisible(text):
    """What a message adds about empty ``text`` that :func:`blank` refuses but ``str.strip``
    would keep: ``''`` or ``' (nothing visible in it: ...)'``."""
    return '' if not text.strip() else ' (nothing visible in it: zero-width, control or format characters)'


class Stdin(str):
    """Standard input read whole as a data file (``--data -``): the name ``<stdin>``, which
    messages give as ``<stdin>:LINE``, its ``data`` (bytes), and its ``extension``:
    ``.jsonl`` when its first character that is not a space is ``{`` (JSON lines), else none,
    as a file without an extension (a table is then read as TSV, SNLI as its ``.txt``)."""

    def __new__(cls, data):
        self = super().__new__(cls, '<stdin>')
        self.data = data
        self.extension = '.jsonl' if data.lstrip()[:1] == b'{' else ''
        return self


def read_stdin(stream=None):
    """:class:`Stdin` of ``stream`` (default: the process's standard input), read to its
    end; a terminal is told how to end it."""
    if stream is None:
        if sys.stdin is None:
            raise DataError('--data -: there is no standard input')
        if sys.stdin.isatty():
            print('reading the data from standard input (end it with Ctrl-D)', file=sys.stderr)
        stream = sys.stdin.buffer
    return Stdin(stream.read())


def extension(path):
    """The lower-cased extension of a data file's name, with its dot (``.jsonl``); standard
    input's is :class:`Stdin`'s."""
    return getattr(path, 'extension', None) if isinstance(path, Stdin) else \
        os.path.splitext(path)[1].lower()


def read_bytes(path, error=DataError):
    """The bytes of ``path`` (or of :class:`Stdin`) without a leading UTF-8 byte-order mark (as
    Excel's "CSV UTF-8" writes); ``error`` naming the file if it cannot be read or is not a
    regular file."""
    if isinstance(path, Stdin):
        data = path.data
        return data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
    check_regular(path, error, folder_ok=True)  # a folder: the message below
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except IsADirectoryError:
        raise error(f'{path}: a folder, not a file') from None
    except OSError as e:
        raise error(f'{path}: cannot read ({e.strerror})') from None
    return data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data


def place(data, offset):
    """``(line, column)``, from 1, of byte ``offset`` of ``data``."""
    return data.count(b'\n', 0, offset) + 1, offset - (data.rfind(b'\n', 0, offset) + 1) + 1


def read_text(path, encoding='utf-8', hint=HINT):
    """The whole text of ``path`` (a BOM dropped); a byte that does not decode is an error
    naming its line and column and ``hint`` (how to give the encoding: ``--encoding``), and so
    are NUL bytes in a file read with an 8-bit encoding (UTF-16 without a byte-order mark)."""
    name = check_encoding(encoding)
    data = read_bytes(path)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line, column = place(data, e.start)
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            hint = f'the file starts with a UTF-16 byte-order mark: {utf16_hint(hint)}'
        raise DataError(f'{path}:{line}: byte 0x{data[e.start]:02x} at column {column} is not '
                        f'valid {encoding} ({hint})') from None
    if '\x00' in text and not name.startswith(('utf-16', 'utf-32')):
        nul = data.index(b'\x00')
        order = 'le' if nul % 2 else 'be'  # the zero byte after (LE) or before (BE) an ASCII one
        line, column = place(data, nul)
        raise DataError(f'{path}:{line}: a NUL byte at column {column}: the file looks like UTF-16 '
                        f'without a byte-order mark ({utf16_hint(hint, order)})')
    return text[1:] if text.startswith('\ufeff') else text  # a BOM of another encoding's reading


def utf16_hint(hint, order=''):
    """``hint`` turned towards UTF-16 where it names ``--encoding``."""
    codec = f'utf-16-{order}' if order else 'utf-16'
    return f'give --encoding {codec}' if '--encoding' in hint else hint


def decoded_lines(path, encoding='utf-8', hint=HINT):
    """The lines of ``path``, each ending in ``'\\n'``, of :func:`read_text`.

    Splits on ``\\n`` only: ``str.splitlines`` would also break at U+0085, which
    Windows-1252 byte 0x85 decodes to under Latin-1. The text is decoded whole, so encodings
    whose newline is not the byte 0x0a (UTF-16) work too.
    """
    lines = read_text(path, encoding, hint).split('\n')
    if lines and not lines[-1]:
        lines.pop()
    return [line + '\n' for line in lines]


def parse_json(text, path, line=None):
    """The JSON value of ``text``: the whole file ``path``, or its line ``line`` (JSON lines);
    ``DataError`` naming the file and line when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f'{path}:{line or e.lineno}: invalid JSON ({e.msg})') from None
    except RecursionError:  # json's parser recurses per nesting level
        raise DataError(f'{path}:{line or 1}: invalid JSON (nested too deeply)') from None


def json_object(value, where):
    """``value`` if it is a JSON object (a dict), else ``DataError`` naming ``where``."""
    if not isinstance(value, dict):
        raise DataError(f'{where}: expected a JSON object, got {json.dumps(value)[:40]}')
    return value
