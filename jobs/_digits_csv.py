"""Handwritten digits in the MNIST flattened CSV layout: one 28x28 image a line,
``label,pixel0,...,pixel783`` (785 integers: the digit 0-9, then the gray levels 0-255 row by
row).

:func:`read_mnist_csv` reads such a file, with or without a header line (pjreddie's
``mnist_train.csv`` has none, Kaggle's files start ``label,pixel0,...`` or ``label,1x1,...``),
and refuses a malformed one with a :class:`JobInputError` naming the file, the physical line
(1-based, the header counted) and the column. The valid path stays vectorised (pyarrow's CSV
reader, then numpy range checks); only when pyarrow refuses the file, or it holds characters
pyarrow reads more liberally than the layout allows (``0x1F`` is hex to pyarrow), does a line
scan in Python find the first bad line. :func:`write_mnist_csv` writes the layout back with a
header, and :func:`find_mnist_files` picks the train and test files out of a folder listing.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from clusterkit.jobkit import JobInputError

if TYPE_CHECKING:
    import numpy as np

PIXELS = 784
SIDE = 28
COLUMNS = ["label", *(f"pixel{i}" for i in range(PIXELS))]
HEADER = ",".join(COLUMNS)
#: (train, test) name pairs find_mnist_files accepts, in order of preference.
FILE_PAIRS = (("mnist_train.csv", "mnist_test.csv"), ("train.csv", "test.csv"))

_LAYOUT = "label,pixel0,...,pixel783: the digit 0-9, then 784 gray levels 0-255"
_BOM = b"\xef\xbb\xbf"
_GZIP = b"\x1f\x8b"
#: A number where a data line starts; a first field that is not one makes the line a header.
_NUMBER = re.compile(rb'[ \t]*"?[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"?[ \t]*')
#: A value as pyarrow reads it and the layout allows it (pyarrow trims blanks and tabs).
_INTEGER = re.compile(rb"[ \t]*-?[0-9]+[ \t]*")
#: A line that is certainly valid (the scan's shortcut): a digit, then 784 values 0-255.
_VALID_LINE = re.compile(rb"[0-9](?:,(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){%d}" % PIXELS)
#: The bytes of a file the vectorised path can vouch for; any other byte sends it to the scan.
_PLAIN_BYTES = b"0123456789,-\r\n \t"
_WRITE_ROWS = 8192  # rows formatted per chunk by write_mnist_csv


def read_mnist_csv(
    source: IO[bytes] | Any | str | os.PathLike[str], *, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, pixels) of an MNIST CSV file: uint8 arrays of shape (n,) and (n, 784).

    ``source`` is a binary file object (a pyarrow input stream, an open file; read to its end,
    not closed) or a local path; the whole file is held in memory while it is read. ``name``
    names the file in errors. LF, CRLF and CR line ends are accepted, and so are empty lines at
    the end and a UTF-8 byte order mark; an empty line elsewhere is an error. JobInputError,
    naming ``name``, the line and the column, if a line does not hold 785 integers (a label 0-9,
    then pixels 0-255), if the header does not have 785 fields, or if there is no image at all.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    data = _read_all(source)
    start = len(_BOM) if data.startswith(_BOM) else 0
    end = len(data)
    while end > start and data[end - 1] in b"\r\n":
        end -= 1
    if data.startswith(_GZIP, start):
        raise JobInputError(f"{name} is gzip-compressed: decompress it (gunzip) and try again")
    if end == start:
        raise JobInputError(f"{name} is empty: it should hold one image a line, {_LAYOUT}")
    body_start, first_line = _skip_header(data, start, end, name=name)

    body = data[body_start:end]
    del data  # one copy of the file at a time
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=COLUMNS),
            # every physical line is a row (a blank one becomes a row of nulls), so that a row's
            # index gives its line; no quoting: a quoted value is refused, as the scan does
            parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(COLUMNS, pa.int16()),
                null_values=[],  # "" and "NA" are not integers
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        _raise_first_problem(body, first_line, name=name)
        raise JobInputError(
            f"{name} could not be read as CSV ({exc}); it should hold {_LAYOUT}"
        ) from exc
    nulls = any(column.null_count for column in table.columns)
    if nulls or body.translate(None, _PLAIN_BYTES):
        _raise_first_problem(body, first_line, name=name)
        if nulls:  # not expected: the scan refuses every line that gives pyarrow a null
            raise JobInputError(f"{name} holds empty values; it should hold {_LAYOUT}")
    del body

    n = table.num_rows
    labels = table.column(0).to_numpy()
    bad_label = np.flatnonzero((labels < 0) | (labels > 9))
    first_bad = int(bad_label[0]) if bad_label.size else n
    by_column = np.empty((PIXELS, n), dtype=np.uint8)
    bad_pixel = n  # the first row with a pixel out of range
    for j in range(PIXELS):
        values = table.column(j + 1).to_numpy()
        if values.min() < 0 or values.max() > 255:
            bad_pixel = min(bad_pixel, int(np.flatnonzero((values < 0) | (values > 255))[0]))
        else:
            by_column[j] = values
    first_bad = min(first_bad, bad_pixel)
    if first_bad < n:  # the first bad line; on it, the label before the pixels
        row = [int(value) for value in table.slice(first_bad, 1).to_pylist()[0].values()]
        problem = _value_problem(row)
        assert problem is not None
        raise JobInputError(f"{name}, line {first_line + first_bad}: {problem}")
    return labels.astype(np.uint8), np.ascontiguousarray(by_column.T)


def write_mnist_csv(sink: IO[bytes] | Any, labels: np.ndarray, pixels: np.ndarray) -> int:
    """Write ``labels`` (n,) and ``pixels`` (n, 784) or (n, 28, 28) to the binary file object
    ``sink`` (not closed) as MNIST CSV: the header ``label,pixel0,...,pixel783``, then one line
    of plain integers per image, LF line ends. Returns the number of bytes written. ValueError
    if the shapes disagree or a label is not 0-9 or a pixel not 0-255."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    labels = np.asarray(labels)
    pixels = np.asarray(pixels)
    n = len(labels)
    if pixels.ndim == 3 and pixels.shape[1:] == (SIDE, SIDE):
        pixels = pixels.reshape(len(pixels), PIXELS)
    if labels.ndim != 1 or pixels.shape != (n, PIXELS):
        raise ValueError(
            f"expected labels of shape (n,) and pixels of shape (n, {PIXELS}) or "
            f"(n, {SIDE}, {SIDE}); got {labels.shape} and {pixels.shape}"
        )
    for what, values, top in (("label", labels, 9), ("pixel", pixels, 255)):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{what}s must be integers, not {values.dtype}")
        if values.size and (values.min() < 0 or values.max() > top):
            raise ValueError(f"{what}s must lie in 0-{top}: found {values.min()}-{values.max()}")

    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    written = _write(sink, (HEADER + "\n").encode())
    for at in range(0, n, _WRITE_ROWS):
        by_column = np.ascontiguousarray(pixels[at : at + _WRITE_ROWS].T, dtype=np.uint8)
        columns = [pa.array(labels[at : at + _WRITE_ROWS].astype(np.uint8))]
        columns += [pa.array(column) for column in by_column]
        out = pa.BufferOutputStream()
        pacsv.write_csv(pa.table(columns, names=COLUMNS), out, write_options=options)
        written += _write(sink, out.getvalue())
    return written


def find_mnist_files(names: Iterable[str], *, folder: str) -> tuple[str, str]:
    """(train, test) among the file ``names`` found in ``folder`` (bare names or paths; the
    chosen ones are returned as given): ``mnist_train.csv`` and ``mnist_test.csv`` (the "MNIST
    in CSV" files of pjreddie and Kaggle), else ``train.csv`` and ``test.csv``. Names match
    exactly. JobInputError naming ``folder``, the CSV files it holds and the names expected."""
    by_base = {posixpath.basename(name.rstrip("/")): name for name in names}
    for train, test in FILE_PAIRS:
        if train in by_base and test in by_base:
            return by_base[train], by_base[test]
    expected = " or ".join(f"{train} and {test}" for train, test in FILE_PAIRS)
    halves = [
        f"{have} but no {missing}"
        for pair in FILE_PAIRS
        for have, missing in (pair, pair[::-1])
        if have in by_base and missing not in by_base
    ]
    csvs = sorted(base for base in by_base if base.lower().endswith(".csv"))
    holds = ", ".join(csvs[:10]) + (f" and {len(csvs) - 10} more" if len(csvs) > 10 else "")
    raise JobInputError(
        f"{folder} holds no MNIST CSV files: "
        + (f"it has {'; '.join(halves)}" if halves else "")
        + ("; its CSV files are " if halves else "its CSV files are ")
        + (holds or "none")
        + f". Expected {expected}, one image a line ({_LAYOUT})"
    )


def _read_all(source: IO[bytes] | Any | str | os.PathLike[str]) -> bytes:
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:
            return file.read()
    data = source.read()
    return data if isinstance(data, bytes) else bytes(data)


def _write(sink: IO[bytes] | Any, data: Any) -> int:
    sink.write(data)
    return len(data) if isinstance(data, bytes) else int(data.size)


def starts_with_header(head: bytes) -> bool:
    """Whether a CSV whose first bytes are ``head`` (its first line, at least its first field)
    starts with a header: the rule :func:`read_mnist_csv` applies (the first field, after a
    byte order mark, is not a number)."""
    head = head.removeprefix(_BOM)
    first = head.split(b"\n", 1)[0].split(b"\r", 1)[0].split(b",", 1)[0]
    return not _NUMBER.fullmatch(first)


def _skip_header(data: bytes, start: int, end: int, *, name: str) -> tuple[int, int]:
    """(where the images start, the line number of the first one): past the first line if it
    is a header (its first field is not a number), which must then have 785 fields."""
    newline = data.find(b"\n", start, end)
    newline = end if newline < 0 else newline
    cr = data.find(b"\r", start, newline)
    line_end = newline if cr < 0 else cr
    first = data[start:line_end]
    if not first:
        raise JobInputError(f"{name}, line 1: {_line_problem(first)}")
    if _NUMBER.fullmatch(first.split(b",", 1)[0]):
        return start, 1
    fields = first.count(b",") + 1
    if fields != len(COLUMNS):
        hint = {
            PIXELS: "; it has no label column (an unlabelled test file, such as Kaggle's "
            "Digit Recognizer test.csv?): give a labelled file",
            PIXELS + 2: "; an extra column, an index? (pandas: to_csv(index=False))",
        }.get(fields, "")
        raise JobInputError(
            f"{name}, line 1: header has {_fields(fields)}, expected {len(COLUMNS)} "
            f"({_LAYOUT}){hint}"
        )
    body_start = line_end + (2 if data.startswith(b"\r\n", line_end) else 1)
    if body_start >= end:
        raise JobInputError(f"{name} has a header (line 1) but no images: add lines of {_LAYOUT}")
    return body_start, 2


def _raise_first_problem(body: bytes, first_line: int, *, name: str) -> None:
    """JobInputError for the first bad line of ``body`` (whose first line is ``first_line``
    of the file); returns if every line is valid."""
    for index, line in enumerate(body.splitlines()):  # \n, \r\n and \r, as pyarrow
        if _VALID_LINE.fullmatch(line):
            continue
        problem = _line_problem(line)
        if problem:
            raise JobInputError(f"{name}, line {first_line + index}: {problem}")


def _line_problem(line: bytes) -> str | None:
    """What is wrong with one line (the first problem, in column order), or None."""
    if not line:
        return "empty line; remove it (only the end of the file may hold empty lines)"
    fields = line.split(b",")
    if len(fields) != len(COLUMNS):
        extra = "; an extra column, an index?" if len(fields) == len(COLUMNS) + 1 else ""
        return (
            f"{_fields(len(fields))}, expected {len(COLUMNS)} (label + {PIXELS} pixels){extra}; "
            f"each line is one {SIDE}x{SIDE} image, {_LAYOUT}"
        )
    for column, field in zip(COLUMNS, fields, strict=True):
        if not _INTEGER.fullmatch(field):
            text = field.decode("utf-8", "replace")
            shown = repr(text if len(text) <= 20 else text[:20] + "...")
            return (
                f"{shown} in column {column} is not an integer; write every value as a "
                f"plain integer (no decimals, quotes or signs)"
            )
    return _value_problem([int(field) for field in fields])


def _fields(count: int) -> str:
    return f"{count} field{'' if count == 1 else 's'}"


def _value_problem(row: list[int]) -> str | None:
    """What is wrong with one line's integers (label first, then pixels in order), or None."""
    if not 0 <= row[0] <= 9:
        return f"label {row[0]} is not a digit 0-9; column label holds the digit drawn"
    for column, value in zip(COLUMNS[1:], row[1:], strict=True):
        if not 0 <= value <= 255:
            return (
                f"pixel {value} in column {column} is out of range 0-255; pixels are gray "
                f"levels 0 (background) to 255 (ink)"
            )
    return None
