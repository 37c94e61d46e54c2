"""Readers for the real on-disk annotation formats, each validating as it reads, in time linear in
the file (millions of entries in seconds) and holding the result compactly.

Every malformed row, missing file, unknown label, unquoted path with spaces or byte that is not
UTF-8 raises AnnotationError naming the file and the 1-based line; nothing is skipped silently. A
UTF-8 byte-order mark at the start of a file is ignored. Line numbers are found linearly: the fast
paths (pyarrow's CSV parser, the standard json module) find that something is wrong, and the
line is then located by one pass over the text, only when there is an error.

Formats:
- `path label` lists (V-JEPA / VideoMAE index files for K400, SSv2, K710, HowTo100M): one space,
  no header; a path holding spaces (K400's "air drumming" folders) is double-quoted, as pandas'
  `read_csv(delimiter=" ")` in the official loaders also reads it. Relative paths resolve against
  the list file's folder, absolute ones are kept.
- the Kinetics release CSV (`label,youtube_id,time_start,time_end,split[,is_cc]`);
- the Something-Something-v2 JSON files (labels + train/validation lists, template lookup);
- ImageFolder trees (IN1K, Places205) and the iNaturalist-2021 COCO-like JSON.

Readers return `Entries`: paths as one Arrow string array and labels as one int32 numpy array
(not a Python object per entry), so the 2.7M-image iNat21 index takes under 0.5 GB and data-loader
workers forked from the main process share its pages instead of copying them.
"""

from __future__ import annotations

import csv
import io
import json
import mmap
import os
from collections.abc import Sequence as _SequenceABC
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
from vjepa.infra.configs import (
    KINETICS_PATH_FORMAT,
    kinetics_path_format,
)

Entry = tuple[str, int]  # (absolute path, integer label)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_BOM = b"\xef\xbb\xbf"


class AnnotationError(ValueError):
    """An annotation file is malformed; the message starts with `file:line:` (line is 1-based)."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path, self.line = str(path), line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


# ---------------------------------------------------------------------------------------------
# Compact entries


class Entries(_SequenceABC):
    """A split's (path, label) pairs, held as one Arrow large_string array and one int32 array.

    Indexing by position gives the (path, label) tuple the datasets expect; a slice or an index
    array gives another Entries. Equal to any sequence of the same pairs. Nothing here is a Python
    object per entry, so forked data-loader workers do not touch (and copy) its pages."""

    __slots__ = ("paths", "labels")

    def __init__(self, paths: pa.Array | Iterable[str], labels: np.ndarray | Iterable[int]):
        if isinstance(paths, pa.ChunkedArray):
            paths = paths.combine_chunks()
        if not isinstance(paths, pa.Array):
            paths = pa.array(list(paths), type=pa.large_string())
        if paths.type != pa.large_string():
            paths = paths.cast(pa.large_string())
        self.paths = paths
        self.labels = np.ascontiguousarray(np.asarray(labels, dtype=np.int64), dtype=np.int32)
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    @classmethod
    def from_pairs(cls, pairs: Iterable[Entry]) -> "Entries":
        pairs = list(pairs)
        return cls([p for p, _ in pairs], [y for _, y in pairs])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if i < 0:
                i += len(self)
            if not 0 <= i < len(self):
                raise IndexError(f"entry {index} out of range for {len(self)} entries")
            return self.paths[i].as_py(), int(self.labels[i])
        idx = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return Entries(self.paths.take(pa.array(idx.astype(np.int64))), self.labels[idx])

    def __iter__(self) -> Iterator[Entry]:
        step = 65536  # bounded temporary Python objects
        for s in range(0, len(self), step):
            yield from zip(self.paths.slice(s, step).to_pylist(), self.labels[s : s + step].tolist())

    def __add__(self, other) -> "Entries":
        other = other if isinstance(other, Entries) else Entries.from_pairs(other)
        return Entries(pa.concat_arrays([self.paths, other.paths]), np.concatenate([self.labels, other.labels]))

    def __eq__(self, other) -> bool:
        if isinstance(other, Entries):
            return (
                len(self) == len(other)
                and bool(np.array_equal(self.labels, other.labels))
                and self.paths.equals(other.paths)
            )
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(a == tuple(b) for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        head = ", ".join(repr(e) for e in (self[i] for i in range(min(2, len(self)))))
        return f"Entries({len(self)}: [{head}{', ...' if len(self) > 2 else ''}])"

    @property
    def nbytes(self) -> int:
        return self.paths.nbytes + self.labels.nbytes

    def path_list(self) -> list[str]:
        return self.paths.to_pylist()

    def map_labels(self, table: np.ndarray) -> "Entries":
        """Entries with label y replaced by table[y] (paths shared, not copied)."""
        return Entries(self.paths, np.asarray(table)[self.labels])


# ---------------------------------------------------------------------------------------------
# Text: UTF-8 checked, BOM dropped, line of a byte or character offset found linearly


def _read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, None, "annotation file not found")
    data = path.read_bytes()
    return data[len(_BOM) :] if data.startswith(_BOM) else data


def _decode(data: bytes, path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise AnnotationError(
            path,
            line,
            f"not valid UTF-8: byte {data[e.start : e.start + 1]!r} at column {column} "
            f"({e.reason}); re-save the file as UTF-8",
        ) from None


def read_text(path: str | os.PathLike) -> str:
    """A text annotation file as str: UTF-8 (else an error naming the line), BOM dropped. Decoded
    from a read-only memory map, so a multi-GB file is not held twice (bytes and str) at once."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, None, "annotation file not found")
    if path.stat().st_size == 0:
        return ""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        try:
            start = len(_BOM) if mm[: len(_BOM)] == _BOM else 0
            try:
                return str(view[start:], "utf-8")
            except UnicodeDecodeError:
                return _decode(bytes(view[start:]), path)  # raises, naming the line
        finally:
            view.release()


def open_text(path: str | os.PathLike):
    """A text stream over read_text (for csv.reader), universal newlines as open(newline='')."""
    return io.StringIO(read_text(path), newline="")


def line_of(text: str, pos: int) -> int:
    """1-based line of character offset `pos` (one count, linear; call it only on errors)."""
    return text.count("\n", 0, pos) + 1


def _lines(text: str) -> list[str]:
    """Lines of a text without their newlines (\\n or \\r\\n; not str.splitlines, which also splits
    at characters such as U+2028 that may occur inside a file name); trailing blank lines dropped."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [s[:-1] if s.endswith("\r") else s for s in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def nonblank_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline); trailing blank lines are allowed, blank lines
    in the middle are an error (a list with a hole is usually a broken merge)."""
    for i, line in enumerate(_lines(read_text(path)), 1):
        if not line.strip():
            raise AnnotationError(path, i, "blank line inside the list")
        yield i, line


def int_field(text: str, path, line: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(path, line, f"{what} must be an integer, got {text!r}") from None


def check_files_exist(
    paths: Sequence[str] | pa.Array, where, line_of_index=None, progress: bool = False, what: str = "listed file"
) -> None:
    """Every path is an existing file, else an AnnotationError naming `where` and (with
    `line_of_index`) the line of the first missing one. One stat per file: minutes for millions of
    files on a network file system, hence off by default at scale; `progress` shows a bar."""
    items = paths.to_pylist() if isinstance(paths, pa.Array) else paths
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=f"checking files of {Path(str(where)).name}", unit="file", mininterval=2.0)
    for i, p in enumerate(items):
        if not os.path.isfile(p):
            raise AnnotationError(where, line_of_index(i) if line_of_index else None, f"{what} not found: {p}")


def confine_names(names: Sequence[str] | pa.Array, root, where, line_of_index=None, what: str = "path") -> None:
    """Names an annotation file gives relative to a data root (a Kinetics clip, an SSv2 video, an
    iNat image) must stay under it: an absolute name or one whose `..` leads out is an
    AnnotationError naming the file and line. Only names with `..` or a leading '/' are looked at
    one by one (by vjepa.infra.runtime.confined), so millions of plain names cost one vectorised pass."""
    import pyarrow.compute as pc

    from vjepa.infra.runtime import PathEscapeError, confined

    arr = names if isinstance(names, pa.Array) else pa.array(list(names), type=pa.large_string())
    flagged = pc.or_(pc.starts_with(arr, "/"), pc.match_substring_regex(arr, r"(^|/)\.\.(/|$)"))
    for k in np.flatnonzero(np.asarray(flagged.to_numpy(zero_copy_only=False))):
        try:
            confined(arr[int(k)].as_py(), root, f"{what} (under {root})", follow_links=False)
        except PathEscapeError as e:
            raise AnnotationError(where, line_of_index(int(k)) if line_of_index else None, str(e)) from None


def check_one_label_per_path(entries: "Entries", where, line_of_index=None) -> None:
    """A file listed twice with two different labels is an AnnotationError naming the file, the
    path and both lines (listed twice with one label is allowed: a deliberate repeat)."""
    if len(entries) < 2:
        return
    import pyarrow.compute as pc

    table = pa.table({"path": entries.paths, "label": pa.array(entries.labels)})
    per_path = table.group_by("path").aggregate([("label", "count_distinct")])
    clash = per_path.filter(pc.greater(per_path["label_count_distinct"], 1))
    if clash.num_rows == 0:
        return
    first = clash["path"][0].as_py()
    rows = np.flatnonzero(pc.equal(entries.paths, first).to_numpy(zero_copy_only=False))
    a = int(rows[0])
    b = int(rows[np.flatnonzero(entries.labels[rows] != entries.labels[a])[0]])
    line = (lambda n: f"line {line_of_index(n)}") if line_of_index else (lambda n: f"entry {n + 1}")
    raise AnnotationError(
        where,
        line_of_index(b) if line_of_index else None,
        f"{first} is listed twice with two labels: {int(entries.labels[a])} ({line(a)}) and "
        f"{int(entries.labels[b])} ({line(b)})"
        + (f"; {clash.num_rows - 1} more such files" if clash.num_rows > 1 else ""),
    )


# ---------------------------------------------------------------------------------------------
# `path label` lists


def _check_list_line(line: str, path, i: int, num_classes: int | None) -> tuple[str, int]:
    """The rules of one `path label` line (the slow path; also the reference for the fast one)."""
    if not line.strip():
        raise AnnotationError(path, i, "blank line inside the list")
    if "\t" in line:
        raise AnnotationError(
            path, i, "tab found; fields are separated by one space (double-quote a path that holds spaces)"
        )
    try:
        fields = next(csv.reader([line], delimiter=" ", quotechar='"', doublequote=True))
    except csv.Error as e:
        raise AnnotationError(path, i, f"bad quoting in {line!r}: {e}") from None
    if len(fields) != 2 or not all(fields):
        raise AnnotationError(
            path,
            i,
            f"expected 'path label' separated by one space, got {len(fields)} "
            f"fields in {line!r} (double-quote a path that holds spaces: "
            '"air drumming/x.mp4" 3)',
        )
    label = int_field(fields[1], path, i, "label")
    if label < 0 or (num_classes is not None and label >= num_classes):
        raise AnnotationError(path, i, f"unknown label {label} (expected 0..{(num_classes or 1) - 1})")
    return fields[0], label


def _list_slow(path, num_classes: int | None) -> None:
    """Raise the first error of a list, naming its line (linear, run only when the fast path failed)."""
    for i, line in enumerate(_lines(read_text(path)), 1):
        _check_list_line(line, path, i, num_classes)


def _under(root: str, paths: pa.Array) -> pa.Array:
    """Relative paths joined under `root` (absolute ones kept), in Arrow; normalised only where a
    path has '.' or '..' segments or doubled slashes (rare in real lists)."""
    import pyarrow.compute as pc

    absolute = pc.starts_with(paths, "/")
    if not pc.all(absolute).as_py():
        sep, base = pa.scalar("/", pa.large_string()), pa.scalar(root, pa.large_string())
        paths = pc.if_else(absolute, paths, pc.binary_join_element_wise(base, paths, sep))
    dotted = np.asarray(pc.match_substring_regex(paths, r"(^|/)\.\.?(/|$)|//").to_numpy(zero_copy_only=False))
    if dotted.any():
        py = paths.to_pylist()
        for k in np.flatnonzero(dotted):
            py[k] = os.path.normpath(py[k])
        paths = pa.array(py, type=pa.large_string())
    return paths


def read_path_label_list(
    path: str | os.PathLike, check_files: bool = True, num_classes: int | None = None, progress: bool = False
) -> Entries:
    """Read a space-separated `path label` list (no header) into Entries (absolute paths).

    Split on single spaces like the official reader, so an unquoted path with spaces, a tab or a
    double space is an error rather than a misparse; a double-quoted path may hold spaces (`""` is
    a quote inside it). With `num_classes`, labels outside [0, num_classes) are unknown labels.
    With `check_files`, every listed file must exist.

    Parsed by pyarrow's CSV reader (C, linear); any parse or check failure re-reads the text line
    by line to name the first bad line."""
    import pyarrow.csv as pacsv
    import pyarrow.compute as pc

    data = _read_bytes(path)
    end = len(data)  # trailing blank lines are allowed: cut them (keeping the last line whole), no copy
    while end and data[end - 1] in b" \t\r\n\x0b\x0c":
        end -= 1
    if end == 0:
        raise AnnotationError(path, None, "the list has no entries")
    cut = data.find(b"\n", end)
    body = memoryview(data)[: cut if cut != -1 else len(data)]
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=["path", "label"], block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                delimiter=" ",
                quote_char='"',
                escape_char=False,
                double_quote=True,
                newlines_in_values=False,
                ignore_empty_lines=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={"path": pa.large_string(), "label": pa.string()},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        paths = table.column("path").combine_chunks()
        paths = (
            pc.if_else(pc.ends_with(paths, "\r"), pc.utf8_slice_codeunits(paths, 0, -1), paths)
            if pc.any(pc.ends_with(paths, "\r")).as_py()
            else paths
        )
        text_labels = table.column("label").combine_chunks()
        text_labels = pc.utf8_rtrim(text_labels, "\r")
        bad = pc.or_(
            pc.or_(pc.match_substring(paths, "\t"), pc.equal(pc.utf8_length(paths), 0)),
            pc.invert(pc.match_substring_regex(text_labels, r"^[+-]?[0-9]+$")),
        )
        if pc.any(bad).as_py():
            raise ValueError("a line breaks the rules")
        labels = pc.cast(text_labels, pa.int64()).to_numpy()
        low_or_high = (labels < 0) | ((labels >= num_classes) if num_classes is not None else False)
        if low_or_high.any():
            raise ValueError("a label is out of range")
    except (pa.ArrowInvalid, ValueError) as e:
        _list_slow(path, num_classes)
        raise AnnotationError(path, None, f"cannot parse the list: {e}") from None
    entries = Entries(_under(str(Path(path).resolve().parent), paths), labels)
    if check_files:
        check_files_exist(entries.paths, path, lambda i: i + 1, progress)
    check_one_label_per_path(entries, path, lambda i: i + 1)
    return entries


def write_path_label_list(entries: Iterable[Entry], path: str | os.PathLike, relative: bool = True) -> Path:
    """Write [(path, label)] as a `path label` list; paths relative to the list's folder when
    `relative`. A path holding spaces or quotes is double-quoted (quotes doubled); one holding other
    whitespace (tabs, newlines), which the format cannot hold, is refused."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    lines = []
    for n, (p, label) in enumerate(entries, 1):
        if any(c.isspace() and c != " " for c in str(p)):
            raise ValueError(
                f"entry {n}: path {p!r} contains whitespace other than spaces, which a `path label` list cannot hold"
            )
        out = os.path.relpath(os.path.abspath(p), base) if relative else os.path.abspath(p)
        if " " in out or '"' in out:
            out = '"' + out.replace('"', '""') + '"'
        lines.append(f"{out} {int(label)}\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# Kinetics release CSV

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")


def read_kinetics_csv(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    classes: Sequence[str] | Mapping[str, int] | None = None,
    path_format: str = KINETICS_PATH_FORMAT,
    check_files: bool = True,
    progress: bool = False,
) -> tuple[Entries, dict[str, int]]:
    """Read a Kinetics release CSV into entries and the class-name -> index map.

    The map is alphabetical over this file's labels unless `classes` is given (pass the training
    map when reading validation, so indices agree); a label outside it is an unknown label. Clip
    paths follow `path_format` under `video_root` (default: the CSV's folder): a layout name of
    KINETICS_PATH_FORMATS or a format string with fields label, label_underscored (spaces -> '_'),
    youtube_id, time_start, time_end, split."""
    root = Path(video_root) if video_root is not None else Path(path).resolve().parent
    path_format = kinetics_path_format(path_format)
    rows = []
    with open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header[:5]) != KINETICS_COLUMNS:
            raise AnnotationError(
                path,
                1,
                f"expected header {','.join(KINETICS_COLUMNS)}[,is_cc], got {header}"
                " (a test CSV without labels cannot train or evaluate a probe)",
            )
        ncols = len(header)
        for row in reader:
            i = reader.line_num
            if not row:
                raise AnnotationError(path, i, "blank line")
            if len(row) != ncols:
                raise AnnotationError(path, i, f"expected {ncols} columns, got {len(row)}: {row}")
            label, yid = row[0], row[1]
            if not label or not yid:
                raise AnnotationError(path, i, "empty label or youtube_id")
            rows.append(
                (
                    i,
                    label,
                    yid,
                    int_field(row[2], path, i, "time_start"),
                    int_field(row[3], path, i, "time_end"),
                    row[4],
                )
            )
    if not rows:
        raise AnnotationError(path, None, "the CSV has no rows")
    if classes is None:
        class_to_idx = {c: k for k, c in enumerate(sorted({r[1] for r in rows}))}
    elif isinstance(classes, Mapping):
        class_to_idx = dict(classes)
    else:
        class_to_idx = {c: k for k, c in enumerate(classes)}
    paths, labels, lines, rels = [], np.empty(len(rows), dtype=np.int32), [], []
    root_s = str(root)
    for n, (i, label, yid, t0, t1, split) in enumerate(rows):
        k = class_to_idx.get(label)
        if k is None:
            raise AnnotationError(path, i, f"unknown label {label!r}")
        rel = path_format.format(
            label=label,
            label_underscored=label.replace(" ", "_"),
            youtube_id=yid,
            time_start=t0,
            time_end=t1,
            split=split,
        )
        paths.append(f"{root_s}/{rel}")
        rels.append(rel)
        labels[n] = k
        lines.append(i)
    confine_names(rels, root_s, path, lambda n: lines[n], "clip")
    entries = Entries(paths, labels)
    del paths, rels
    if check_files:
        check_files_exist(entries.paths, path, lambda n: lines[n], progress, "clip")
    check_one_label_per_path(entries, path, lambda n: lines[n])
    return entries, class_to_idx


# ---------------------------------------------------------------------------------------------
# JSON (SSv2, iNat21): parsed by the json module; the line of a bad item is found afterwards


def _load_json(path: str | os.PathLike, object_hook=None):
    text = read_text(path)
    try:
        return json.loads(text, object_hook=object_hook)
    except json.JSONDecodeError as e:
        raise AnnotationError(path, e.lineno, f"malformed JSON: {e.msg} (column {e.colno})") from None


def json_item_line(path: str | os.PathLike, key: str | None, index: int | None = None) -> int:
    """1-based line where item `index` of the top-level list (key None) or of the list under the
    top-level `key` starts (index None: the line of the key itself). One linear pass that decodes
    the items before it; meant for error messages."""
    text = read_text(path)
    dec, ws = json.JSONDecoder(), " \t\r\n"

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        return pos

    def nth(pos: int, n: int) -> int:  # start of element n of the list at pos
        pos = skip(skip(pos) + 1)
        for _ in range(n):
            _, pos = dec.raw_decode(text, skip(pos))
            pos = skip(pos) + 1  # the comma
        return skip(pos)

    try:
        pos = skip(0)
        if key is None:
            return line_of(text, nth(pos, index))
        pos = skip(pos + 1)  # after '{'
        while pos < len(text):
            kstart = pos
            k, pos = dec.raw_decode(text, pos)
            pos = skip(skip(pos) + 1)  # after ':'
            if k == key:
                return line_of(text, kstart if index is None else nth(pos, index))
            _, pos = dec.raw_decode(text, pos)
            pos = skip(skip(pos) + 1)  # after ','
    except (json.JSONDecodeError, IndexError):
        pass
    return 1


# ---------------------------------------------------------------------------------------------
# Something-Something-v2


def ssv2_template_to_class(template: str) -> str:
    """SSv2 class name of a template: the brackets around 'something' removed."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_labels(path: str | os.PathLike) -> dict[str, int]:
    """`something-something-v2-labels.json`: {class name: "id"} -> {class name: int id}."""
    data = _load_json(path)
    if not isinstance(data, dict) or not data:
        raise AnnotationError(path, 1, "expected a non-empty object {class name: id}")
    out, seen = {}, {}
    for name, idx in data.items():
        try:
            k = int(str(idx))
        except ValueError:
            raise AnnotationError(
                path, json_item_line(path, name), f"id of {name!r} must be an integer, got {idx!r}"
            ) from None
        if k in seen:
            raise AnnotationError(path, json_item_line(path, name), f"id {k} used twice ({seen[k]!r} and {name!r})")
        seen[k] = name
        out[name] = k
    if sorted(seen) != list(range(len(seen))):
        raise AnnotationError(path, None, f"ids must be 0..{len(seen) - 1}, got {sorted(seen)[:5]}...")
    return out


def read_ssv2(
    split_json: str | os.PathLike,
    labels_json: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    extension: str = ".webm",
    check_files: bool = True,
    progress: bool = False,
) -> tuple[Entries, dict[str, int]]:
    """An SSv2 train/validation JSON list of {id, label, template, placeholders} into entries
    (`<video_root>/<id><extension>`, class looked up by the template without brackets)."""
    classes = read_ssv2_labels(labels_json)
    root = str(Path(video_root) if video_root is not None else Path(split_json).resolve().parent)
    data = _load_json(split_json)
    if not isinstance(data, list):
        raise AnnotationError(split_json, 1, "expected a list of {id, label, template, placeholders}")

    def fail(n, msg):
        raise AnnotationError(split_json, json_item_line(split_json, None, n), msg)

    paths, labels = [], np.empty(len(data), dtype=np.int32)
    for n, item in enumerate(data):
        if not isinstance(item, dict) or "id" not in item or "template" not in item:
            fail(n, f"entry needs 'id' and 'template' (a test list has no labels): {item!r}")
        vid = str(item["id"])
        if not vid or any(c.isspace() for c in vid):
            fail(n, f"bad video id {vid!r}")
        k = classes.get(ssv2_template_to_class(str(item["template"])))
        if k is None:
            fail(n, f"unknown label: template {item['template']!r} is not in {labels_json}")
        paths.append(f"{root}/{vid}{extension}")
        labels[n] = k
    if not paths:
        raise AnnotationError(split_json, None, "the list has no entries")
    del data
    confine_names(
        [p[len(str(root)) + 1 :] for p in paths],
        str(root),
        split_json,
        lambda n: json_item_line(split_json, None, n),
        "video",
    )
    entries = Entries(paths, labels)
    if check_files:
        check_files_exist(entries.paths, split_json, lambda n: json_item_line(split_json, None, n), progress, "video")
    check_one_label_per_path(entries, split_json, lambda n: json_item_line(split_json, None, n))
    return entries, classes


# ---------------------------------------------------------------------------------------------
# Images: ImageFolder and iNat21


def read_image_folder(
    root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> tuple[Entries, dict[str, int]]:
    """An ImageFolder tree `root/<class>/**/<image>`: classes are the sorted sub-folders (as
    torchvision's ImageFolder). Hidden files are ignored; any other non-image file or an empty
    class folder is an error rather than a silent skip. One directory listing per folder (the
    listing is the existence check)."""
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(root, None, "image folder not found")
    with os.scandir(root) as it:
        class_names = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    if not class_names:
        raise AnnotationError(root, None, "no class sub-folders")
    exts = tuple(e.lower() for e in extensions)
    classes = {name: k for k, name in enumerate(class_names)}
    chunks, counts = [], []
    for name in class_names:
        d = os.path.join(root, name)
        files: list[str] = []
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = sorted(x for x in dirnames if not x.startswith("."))
            for fn in sorted(filenames):
                if fn.startswith("."):
                    continue
                if not fn.lower().endswith(exts):
                    raise AnnotationError(
                        os.path.join(dirpath, fn), None, f"not an image file (allowed: {', '.join(exts)})"
                    )
                files.append(os.path.join(dirpath, fn))
        if not files:
            raise AnnotationError(d, None, "class folder has no images")
        chunks.append(pa.array(files, type=pa.large_string()))
        counts.append(len(files))
    labels = np.repeat(np.arange(len(class_names), dtype=np.int32), counts)
    return Entries(pa.concat_arrays(chunks), labels), classes


def _inat_hook(d: dict):
    """json object_hook for iNat21: a well-formed image or annotation becomes a small tuple
    (the other fields are not needed), anything else stays a dict (and fails validation)."""
    fn, iid = d.get("file_name"), d.get("id")
    if type(fn) is str and type(iid) is int:
        return ("i", iid, fn)
    img, cat = d.get("image_id"), d.get("category_id")
    if type(img) is int and type(cat) is int:
        return ("a", img, cat)
    return d


def read_inat_json(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    check_files: bool = True,
    progress: bool = False,
) -> tuple[Entries, dict[str, int]]:
    """An iNat21 COCO-like JSON (images, annotations, categories) into entries and a
    category-name -> index map; indices follow ascending category id. Each image needs exactly one
    annotation; `file_name` resolves against `image_root` (default: the JSON's folder). Entries
    are in the order of the `images` list. Checks run on arrays (ids sorted once)."""
    data = _load_json(path, _inat_hook)
    root = Path(image_root) if image_root is not None else Path(path).resolve().parent
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise AnnotationError(path, 1, f"missing list {key!r} (a test JSON has no annotations)")

    def fail(key, n, msg):
        raise AnnotationError(path, json_item_line(path, key, n), msg)

    cats = {}
    for n, c in enumerate(data["categories"]):
        if isinstance(c, tuple) or not isinstance(c, dict) or type(c.get("id")) is not int or "name" not in c:
            fail("categories", n, f"category needs integer 'id' and 'name': {c!r}")
        if c["id"] in cats:
            fail("categories", n, f"category id {c['id']} used twice")
        cats[c["id"]] = str(c["name"])
    cat_ids = np.array(sorted(cats), dtype=np.int64)

    images = data["images"]
    for n, im in enumerate(images):
        if type(im) is not tuple or im[0] != "i":
            fail("images", n, f"image needs integer 'id' and string 'file_name': {im!r}")
    image_ids = np.fromiter((im[1] for im in images), dtype=np.int64, count=len(images))
    names = pa.array([im[2] for im in images], type=pa.large_string())
    data["images"] = images = None
    anns = data["annotations"]
    for n, a in enumerate(anns):
        if type(a) is not tuple or a[0] != "a":
            fail("annotations", n, f"annotation needs integer 'image_id' and 'category_id': {a!r}")
    ann_image = np.fromiter((a[1] for a in anns), dtype=np.int64, count=len(anns))
    ann_cat = np.fromiter((a[2] for a in anns), dtype=np.int64, count=len(anns))
    data = anns = None
    if not len(image_ids):
        raise AnnotationError(path, None, "no images")

    order = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(dup):
        n = int(order[dup + 1].min())  # the first repeat in file order
        fail("images", n, f"image id {image_ids[n]} used twice")
    pos = np.minimum(np.searchsorted(sorted_ids, ann_image), len(sorted_ids) - 1)
    unknown_image = sorted_ids[pos] != ann_image
    cpos = np.minimum(np.searchsorted(cat_ids, ann_cat), len(cat_ids) - 1) if len(cat_ids) else np.zeros_like(ann_cat)
    unknown_cat = (cat_ids[cpos] != ann_cat) if len(cat_ids) else np.ones(len(ann_cat), dtype=bool)
    image_index = order[pos]  # position in `images` of each annotation's image
    seen = np.zeros(len(image_ids), dtype=np.int32)
    bad = unknown_image | unknown_cat
    if bad.any() or len(ann_image) != len(image_ids) or np.bincount(image_index, minlength=len(image_ids)).max() > 1:
        # name the first offending annotation, in file order, as a sequential pass would
        for n in range(len(ann_image)):
            if unknown_image[n]:
                fail("annotations", n, f"annotation refers to unknown image id {ann_image[n]}")
            if unknown_cat[n]:
                fail("annotations", n, f"unknown label: category id {ann_cat[n]}")
            if seen[image_index[n]]:
                fail("annotations", n, f"image id {ann_image[n]} has a second annotation")
            seen[image_index[n]] = 1
        n = int(np.flatnonzero(seen == 0)[0])
        fail("images", n, f"image id {image_ids[n]} has no annotation")
    labels = np.empty(len(image_ids), dtype=np.int32)
    labels[image_index] = cpos
    confine_names(names, str(root), path, lambda n: json_item_line(path, "images", n), "image")
    entries = Entries(_under(str(root), names), labels)
    if check_files:
        check_files_exist(entries.paths, path, lambda n: json_item_line(path, "images", n), progress, "image")
    check_one_label_per_path(entries, path, lambda n: json_item_line(path, "images", n))
    return entries, {cats[cid]: k for k, cid in enumerate(cat_ids.tolist())}
