"""Reading data files: one place for encodings, byte-order marks, and errors that name the
file and line (and point at ``--encoding``)."""
import codecs

from ..errors import ConfigError, DataError

UTF8 = ('utf-8', 'utf_8', 'utf8', 'utf-8-sig')


def check_encoding(encoding):
    """The codec name of ``encoding``; ``ConfigError`` naming ``--encoding`` if Python has none."""
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise ConfigError(f'--encoding {encoding!r}: not a text encoding Python knows (e.g. '
                          'utf-8, cp1252, latin-1)') from None


def read_bytes(path):
    """The bytes of ``path`` without a leading UTF-8 byte-order mark (as Excel's "CSV UTF-8"
    writes); ``DataError`` naming the file if it cannot be read."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except IsADirectoryError:
        raise DataError(f'{path}: a folder, not a data file') from None
    except OSError as e:
        raise DataError(f'{path}: cannot read ({e.strerror})') from None
    return data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data


def _decode_error(path, data, e, encoding):
    lineno = data[:e.start].count(b'\n') + 1
    return DataError(f'{path}:{lineno}: byte 0x{data[e.start]:02x} is not valid {encoding} '
                     f'(give the file\'s encoding, e.g. --encoding cp1252)')


def read_text(path, encoding='utf-8'):
    """The whole text of ``path`` (a BOM dropped); a byte that does not decode names its line."""
    check_encoding(encoding)
    data = read_bytes(path)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise _decode_error(path, data, e, encoding) from None


def decoded_lines(path, encoding='utf-8'):
    """The lines of ``path`` (ending in ``'\\n'`` except maybe the last), decoded one by one.

    Splits the bytes on ``\\n`` only: ``str.splitlines`` would also break at U+0085, which
    Windows-1252 byte 0x85 decodes to under Latin-1. A UTF-8 byte-order mark is read as none;
    a byte that does not decode is an error naming the line.
    """
    check_encoding(encoding)
    data = read_bytes(path)
    lines = data.split(b'\n')
    if lines and not lines[-1]:
        lines.pop()
    out = []
    for lineno, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode(encoding) + '\n')
        except UnicodeDecodeError as e:
            raise DataError(f'{path}:{lineno}: byte 0x{raw[e.start]:02x} at column {e.start + 1} '
                            f'is not valid {encoding} (give the file\'s encoding, e.g. '
                            f'--encoding cp1252)') from None
    if out and out[0].startswith('\ufeff'):  # a BOM of another encoding's reading
        out[0] = out[0][1:]
    return out
