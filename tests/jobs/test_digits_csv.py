"""Reading, checking and writing digits in the MNIST CSV layout, without a cluster."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from pyarrow import fs

from clusterkit.jobkit import JobInputError
from jobs._digits_csv import (
    COLUMNS,
    HEADER,
    PIXELS,
    find_mnist_files,
    read_mnist_csv,
    write_mnist_csv,
)

KAGGLE_HEADER = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, PIXELS), dtype=np.uint8)
    return labels, pixels


def _line(label: object = 5, **pixels: object) -> str:
    """One data line: ``label``, then zeros except ``pixelN=value``."""
    values = [str(pixels.get(f"pixel{i}", 0)) for i in range(PIXELS)]
    return ",".join([str(label), *values])


def _csv(lines: list[str], eol: str = "\n") -> io.BytesIO:
    return io.BytesIO((eol.join(lines) + eol).encode())


def _written(labels: np.ndarray, pixels: np.ndarray) -> bytes:
    sink = io.BytesIO()
    assert write_mnist_csv(sink, labels, pixels) == len(sink.getvalue())
    return sink.getvalue()


def _error(data: bytes | io.BytesIO, name: str = "mnist_train.csv") -> str:
    source = data if isinstance(data, io.BytesIO) else io.BytesIO(data)
    with pytest.raises(JobInputError) as caught:
        read_mnist_csv(source, name=name)
    return str(caught.value)


def test_layout_constants():
    assert len(COLUMNS) == 785 and COLUMNS[:2] == ["label", "pixel0"]
    assert COLUMNS[-1] == "pixel783" and HEADER.split(",") == COLUMNS


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_round_trip(header, eol):
    labels, pixels = _images(50)
    data = _written(labels, pixels)
    assert data.startswith(HEADER.encode() + b"\n") and b'"' not in data
    if not header:
        data = data.split(b"\n", 1)[1]
    data = data.replace(b"\n", eol.encode())
    got_labels, got_pixels = read_mnist_csv(io.BytesIO(data), name="digits.csv")
    assert got_labels.dtype == np.uint8 and got_pixels.dtype == np.uint8
    assert got_pixels.shape == (50, PIXELS) and got_pixels.flags.c_contiguous
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_array_equal(got_pixels, pixels)


def test_two_thousand_random_rows_round_trip_exactly(tmp_path):
    """Several MB: pyarrow parses it in blocks, and the rows still come back in order."""
    labels, pixels = _images(2000, seed=1)
    path = tmp_path / "mnist_train.csv"
    with open(path, "wb") as sink:
        written = write_mnist_csv(sink, labels, pixels.reshape(2000, 28, 28))
    assert written == path.stat().st_size > 4_000_000
    with fs.LocalFileSystem().open_input_stream(str(path)) as stream:
        got_labels, got_pixels = read_mnist_csv(stream, name="mnist_train.csv")
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_array_equal(got_pixels, pixels)
    got_labels, got_pixels = read_mnist_csv(path, name="mnist_train.csv")  # a local path
    np.testing.assert_array_equal(got_pixels, pixels)


def test_pjreddie_layout_has_no_header():
    data = _csv([_line(5, pixel0=255), _line(0, pixel783=7)])
    labels, pixels = read_mnist_csv(data, name="mnist_test.csv")
    assert labels.tolist() == [5, 0]
    assert pixels[0, 0] == 255 and pixels[1, 783] == 7 and pixels.sum() == 262


@pytest.mark.parametrize("header", [HEADER, KAGGLE_HEADER], ids=["pixelN", "RxC"])
def test_kaggle_headers_are_skipped(header):
    labels, pixels = read_mnist_csv(_csv([header, _line(3, pixel5=9)]), name="train.csv")
    assert labels.tolist() == [3] and pixels[0, 5] == 9


def test_empty_lines_at_the_end_and_a_byte_order_mark_are_fine():
    data = b"\xef\xbb\xbf" + (_line(1) + "\r\n" + _line(2) + "\r\n\r\n\n").encode()
    labels, _ = read_mnist_csv(io.BytesIO(data), name="x.csv")
    assert labels.tolist() == [1, 2]


def test_a_row_of_784_fields_names_its_line():
    lines = [HEADER, _line(), _line()[:-2]]  # line 3 lacks its last pixel
    message = _error(_csv(lines))
    assert message.startswith("mnist_train.csv, line 3: 784 fields, expected 785 (label + 784")


def test_a_label_of_10():
    message = _error(_csv([_line()] * 8 + [_line(10)] + [_line()]))
    assert message.startswith("mnist_train.csv, line 9: label 10 is not a digit 0-9")
    assert "column label" in message


def test_a_pixel_of_300():
    lines = [HEADER] + [_line()] * 15 + [_line(pixel41=300, pixel50=400)] + [_line(11)]
    message = _error(_csv(lines))
    assert message.startswith(
        "mnist_train.csv, line 17: pixel 300 in column pixel41 is out of range 0-255"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [("abc", "'abc'"), ("1.5", "'1.5'"), ("0x1", "'0x1'"), ('"7"', "'\"7\"'"), ("", "''")],
)
def test_a_pixel_that_is_not_an_integer(value, shown):
    """Hex is refused although pyarrow reads it; quotes although a CSV reader would drop them."""
    lines = [HEADER, _line(), _line(), _line(), _line(pixel3=value), _line(pixel9=300)]
    message = _error(_csv(lines))
    assert message.startswith(f"mnist_train.csv, line 5: {shown} in column pixel3 is not an")


def test_a_text_label_on_the_first_line_is_taken_for_a_header():
    assert _error(_csv([_line("x"), _line("y")])).startswith(
        "mnist_train.csv, line 2: 'y' in column label is not an integer"
    )


def test_a_negative_pixel():
    message = _error(_csv([_line(), _line(pixel783=-1)], eol="\r\n"))
    assert message.startswith(
        "mnist_train.csv, line 2: pixel -1 in column pixel783 is out of range 0-255"
    )


def test_the_first_problem_in_the_file_is_reported():
    """The label before the pixels, an earlier line before a later one, whichever the check."""
    for last in (_line("x"), _line(11)):  # pyarrow refuses "x" (a scan), not 11 (numpy)
        assert "line 2: label 12 " in _error(_csv([_line(), _line(12, pixel0=-5), last]))
        assert "line 2: pixel 256 in column pixel2 " in _error(
            _csv([_line(), _line(pixel7=-1, pixel2=256), last])
        )


def test_an_empty_file():
    for data in (b"", b"\n", b"\r\n\r\n"):
        assert _error(data, "mnist_test.csv").startswith("mnist_test.csv is empty")


def test_a_file_with_only_a_header():
    message = _error(_csv([HEADER]))
    assert message.startswith("mnist_train.csv has a header (line 1) but no images")


def test_an_empty_line_in_the_middle():
    for eol in ("\n", "\r\n"):
        message = _error(_csv([_line(), _line(), "", _line()], eol=eol))
        assert message.startswith("mnist_train.csv, line 3: empty line")
    assert _error(_csv(["", _line()])).startswith("mnist_train.csv, line 1: empty line")


def test_errors_deep_in_a_large_file_name_the_physical_line():
    """Past pyarrow's first blocks (1 MB each), the line is still the row index + 1 (+ 1 for
    the header), whichever check finds the problem."""
    labels, pixels = _images(2000, seed=2)
    lines = _written(labels, pixels).decode().splitlines()  # header + 2000 lines
    for broken, expected in [
        (lambda line: line.replace(",", ",300,", 1), "1900: 786 fields"),  # scan
        (lambda line: "", "1900: empty line"),  # a row of nulls to pyarrow
        (lambda line: "9,300" + line[line.index(",", 2) :], "1900: pixel 300 in column pixel0"),
        (lambda line: "9,1e2" + line[line.index(",", 2) :], "1900: '1e2' in column pixel0"),
    ]:
        copy = list(lines)
        copy[1899] = broken(copy[1899])
        assert f"big.csv, line {expected}" in _error(_csv(copy), "big.csv")


def test_headers_of_the_wrong_width():
    unlabelled = ",".join(COLUMNS[1:])  # Kaggle's Digit Recognizer test.csv
    message = _error(_csv([unlabelled, _line()[2:]]), "test.csv")
    assert message.startswith("test.csv, line 1: header has 784 fields, expected 785")
    assert "no label column" in message
    assert "index?" in _error(_csv(["," + HEADER, "0," + _line()]))


def test_a_gzipped_file_is_named():
    assert "gzip" in _error(gzip.compress(_csv([_line()]).getvalue()))


def test_write_refuses_what_it_could_not_read_back():
    labels, pixels = _images(3)
    with pytest.raises(ValueError, match="labels must lie in 0-9"):
        write_mnist_csv(io.BytesIO(), np.array([1, 2, 10]), pixels)
    with pytest.raises(ValueError, match="pixels must lie in 0-255"):
        write_mnist_csv(io.BytesIO(), labels, pixels.astype(np.int32) + 1)
    with pytest.raises(ValueError, match="shape"):
        write_mnist_csv(io.BytesIO(), labels, pixels[:, :700])
    with pytest.raises(ValueError, match="integers"):
        write_mnist_csv(io.BytesIO(), labels, pixels.astype(np.float32))


def test_write_of_no_images_is_a_header():
    data = _written(np.zeros(0, np.uint8), np.zeros((0, PIXELS), np.uint8))
    assert data == (HEADER + "\n").encode()


def test_find_mnist_files_prefers_the_mnist_pair():
    names = ["train.csv", "test.csv", "mnist_test.csv", "mnist_train.csv", "README.md"]
    assert find_mnist_files(names, folder="/data/mnist") == ("mnist_train.csv", "mnist_test.csv")
    assert find_mnist_files(["test.csv", "train.csv"], folder="d") == ("train.csv", "test.csv")
    paths = ["hdfs://m:9000/d/mnist_train.csv", "hdfs://m:9000/d/mnist_test.csv"]
    assert find_mnist_files(paths, folder="hdfs://m:9000/d") == tuple(paths)


def test_find_mnist_files_names_the_folder_and_what_it_holds():
    with pytest.raises(JobInputError) as caught:
        find_mnist_files(["mnist_train.csv", "digits.csv", "notes.txt"], folder="/data/mnist")
    message = str(caught.value)
    assert message.startswith("/data/mnist holds no MNIST CSV files")
    assert "mnist_train.csv but no mnist_test.csv" in message
    assert "digits.csv, mnist_train.csv" in message and "notes.txt" not in message
    assert "mnist_train.csv and mnist_test.csv or train.csv and test.csv" in message
    with pytest.raises(JobInputError, match="its CSV files are none"):
        find_mnist_files([], folder="/empty")
