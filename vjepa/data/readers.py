"""Readers for the real on-disk annotation formats, each validating as it reads.

Every malformed row, missing file, unknown label or path with spaces raises AnnotationError
naming the file and the 1-based line; nothing is skipped silently.

Formats:
- `path label` lists (V-JEPA / VideoMAE index files for K400, SSv2, K710, HowTo100M): one space,
  no header. Relative paths resolve against the list file's folder, absolute ones are kept.
- the Kinetics release CSV (`label,youtube_id,time_start,time_end,split[,is_cc]`);
- the Something-Something-v2 JSON files (labels + train/validation lists, template lookup);
- ImageFolder trees (IN1K, Places205) and the iNaturalist-2021 COCO-like JSON.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

Entry = tuple[str, int]  # (absolute path, integer label)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class AnnotationError(ValueError):
    """An annotation file is malformed; the message starts with `file:line:` (line is 1-based)."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path, self.line = str(path), line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def _open_text(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, None, "annotation file not found")
    return open(path, newline="", encoding="utf-8")


def resolve_path(path: str, base: str | os.PathLike) -> str:
    """Absolute paths are kept; relative ones resolve against `base` (the annotation file's folder)."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _nonblank_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline); trailing blank lines are allowed, blank lines
    in the middle are an error (a list with a hole is usually a broken merge)."""
    with _open_text(path) as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise AnnotationError(path, i, "blank line inside the list")
        yield i, line


def _int(text: str, path, line: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(path, line, f"{what} must be an integer, got {text!r}") from None


def read_path_label_list(path: str | os.PathLike, check_files: bool = True,
                         num_classes: int | None = None) -> list[Entry]:
    """Read a space-separated `path label` list (no header) into [(absolute path, label)].

    Split on single spaces like the official reader, so a path with spaces, a tab or a double space
    is an error rather than a misparse. With `num_classes`, labels outside [0, num_classes) are
    unknown labels. With `check_files`, every listed file must exist."""
    base = Path(path).resolve().parent
    entries: list[Entry] = []
    for i, line in _nonblank_lines(path):
        fields = line.split(" ")
        if "\t" in line:
            raise AnnotationError(path, i, "tab found; fields are separated by one space")
        if len(fields) != 2 or not all(fields):
            raise AnnotationError(path, i, f"expected 'path label' separated by one space, got {len(fields)} "
                                           f"fields in {line!r} (paths must not contain spaces)")
        label = _int(fields[1], path, i, "label")
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise AnnotationError(path, i, f"unknown label {label} (expected 0..{(num_classes or 1) - 1})")
        p = resolve_path(fields[0], base)
        if check_files and not os.path.isfile(p):
            raise AnnotationError(path, i, f"listed file not found: {p}")
        entries.append((p, label))
    if not entries:
        raise AnnotationError(path, None, "the list has no entries")
    return entries


def write_path_label_list(entries: Sequence[Entry], path: str | os.PathLike, relative: bool = True) -> Path:
    """Write [(path, label)] as a `path label` list; paths relative to the list's folder when
    `relative`. Refuses paths with whitespace, which the format cannot hold."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    lines = []
    for n, (p, label) in enumerate(entries, 1):
        if any(c.isspace() for c in str(p)):
            raise ValueError(f"entry {n}: path {p!r} contains whitespace, which a `path label` list cannot hold")
        out = os.path.relpath(os.path.abspath(p), base) if relative else os.path.abspath(p)
        lines.append(f"{out} {int(label)}\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# Kinetics release CSV

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
KINETICS_PATH_FORMAT = "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


def read_kinetics_csv(path: str | os.PathLike, video_root: str | os.PathLike | None = None,
                      classes: Sequence[str] | Mapping[str, int] | None = None,
                      path_format: str = KINETICS_PATH_FORMAT,
                      check_files: bool = True) -> tuple[list[Entry], dict[str, int]]:
    """Read a Kinetics release CSV into entries and the class-name -> index map.

    The map is alphabetical over this file's labels unless `classes` is given (pass the training
    map when reading validation, so indices agree); a label outside it is an unknown label. Clip
    paths follow `path_format` under `video_root` (default: the CSV's folder); its fields are
    label, label_underscored (spaces -> '_'), youtube_id, time_start, time_end, split."""
    root = Path(video_root) if video_root is not None else Path(path).resolve().parent
    rows = []
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header[:5]) != KINETICS_COLUMNS:
            raise AnnotationError(path, 1, f"expected header {','.join(KINETICS_COLUMNS)}[,is_cc], got {header}"
                                           " (a test CSV without labels cannot train or evaluate a probe)")
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
            rows.append((i, label, yid, _int(row[2], path, i, "time_start"), _int(row[3], path, i, "time_end"), row[4]))
    if not rows:
        raise AnnotationError(path, None, "the CSV has no rows")
    if classes is None:
        class_to_idx = {c: k for k, c in enumerate(sorted({r[1] for r in rows}))}
    elif isinstance(classes, Mapping):
        class_to_idx = dict(classes)
    else:
        class_to_idx = {c: k for k, c in enumerate(classes)}
    entries = []
    for i, label, yid, t0, t1, split in rows:
        if label not in class_to_idx:
            raise AnnotationError(path, i, f"unknown label {label!r}")
        rel = path_format.format(label=label, label_underscored=label.replace(" ", "_"), youtube_id=yid,
                                 time_start=t0, time_end=t1, split=split)
        p = str(root / rel)
        if check_files and not os.path.isfile(p):
            raise AnnotationError(path, i, f"clip not found: {p}")
        entries.append((p, class_to_idx[label]))
    return entries, class_to_idx


# ---------------------------------------------------------------------------------------------
# JSON with line numbers (SSv2, iNat21): error messages must name the line of the bad entry.

def _json_with_lines(path: str | os.PathLike):
    """Parse a JSON file whose top level is a list or an object. Returns (data, lines) where
    lines[i] (list) or lines[key] (object) is the 1-based line where that item starts, and for an
    object whose values are lists also lines[(key, i)]."""
    with _open_text(path) as f:
        text = f.read()
    dec = json.JSONDecoder()
    ws = " \t\r\n"

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        return pos

    def expect(pos: int, ch: str) -> int:
        pos = skip(pos)
        if pos >= len(text) or text[pos] != ch:
            raise AnnotationError(path, line_of(min(pos, len(text) - 1)), f"malformed JSON: expected {ch!r}")
        return pos + 1

    def value(pos: int):
        pos = skip(pos)
        try:
            return dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise AnnotationError(path, e.lineno, f"malformed JSON: {e.msg}") from None

    def array(pos: int, key=None):
        """Parse a list starting at pos ('[' expected), recording each element's line."""
        pos = expect(pos, "[")
        out, lines = [], {}
        pos = skip(pos)
        if pos < len(text) and text[pos] == "]":
            return out, lines, pos + 1
        while True:
            start = skip(pos)
            item, pos = value(start)
            lines[(key, len(out)) if key is not None else len(out)] = line_of(start)
            out.append(item)
            pos = skip(pos)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            return out, lines, expect(pos, "]")

    pos = skip(0)
    if pos < len(text) and text[pos] == "[":
        data, lines, pos = array(pos)
    elif pos < len(text) and text[pos] == "{":
        data, lines = {}, {}
        pos = skip(pos + 1)
        if pos < len(text) and text[pos] == "}":
            pos += 1
        else:
            while True:
                kstart = skip(pos)
                key, pos = value(kstart)
                if not isinstance(key, str):
                    raise AnnotationError(path, line_of(kstart), "malformed JSON: object key must be a string")
                pos = expect(pos, ":")
                vstart = skip(pos)
                lines[key] = line_of(kstart)
                if vstart < len(text) and text[vstart] == "[":
                    data[key], sub, pos = array(vstart, key)
                    lines.update(sub)
                else:
                    data[key], pos = value(vstart)
                pos = skip(pos)
                if pos < len(text) and text[pos] == ",":
                    pos += 1
                    continue
                pos = expect(pos, "}")
                break
    else:
        raise AnnotationError(path, 1, "malformed JSON: expected a list or an object at the top level")
    if skip(pos) != len(text):
        raise AnnotationError(path, line_of(skip(pos)), "malformed JSON: extra data after the top-level value")
    return data, lines


# ---------------------------------------------------------------------------------------------
# Something-Something-v2

def ssv2_template_to_class(template: str) -> str:
    """SSv2 class name of a template: the brackets around 'something' removed."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_labels(path: str | os.PathLike) -> dict[str, int]:
    """`something-something-v2-labels.json`: {class name: "id"} -> {class name: int id}."""
    data, lines = _json_with_lines(path)
    if not isinstance(data, dict) or not data:
        raise AnnotationError(path, 1, "expected a non-empty object {class name: id}")
    out, seen = {}, {}
    for name, idx in data.items():
        k = _int(str(idx), path, lines[name], f"id of {name!r}")
        if k in seen:
            raise AnnotationError(path, lines[name], f"id {k} used twice ({seen[k]!r} and {name!r})")
        seen[k] = name
        out[name] = k
    if sorted(seen) != list(range(len(seen))):
        raise AnnotationError(path, None, f"ids must be 0..{len(seen) - 1}, got {sorted(seen)[:5]}...")
    return out


def read_ssv2(split_json: str | os.PathLike, labels_json: str | os.PathLike,
              video_root: str | os.PathLike | None = None, extension: str = ".webm",
              check_files: bool = True) -> tuple[list[Entry], dict[str, int]]:
    """An SSv2 train/validation JSON list of {id, label, template, placeholders} into entries
    (`<video_root>/<id><extension>`, class looked up by the template without brackets)."""
    classes = read_ssv2_labels(labels_json)
    root = Path(video_root) if video_root is not None else Path(split_json).resolve().parent
    data, lines = _json_with_lines(split_json)
    if not isinstance(data, list):
        raise AnnotationError(split_json, 1, "expected a list of {id, label, template, placeholders}")
    entries = []
    for n, item in enumerate(data):
        i = lines[n]
        if not isinstance(item, dict) or "id" not in item or "template" not in item:
            raise AnnotationError(split_json, i, f"entry needs 'id' and 'template' (a test list has no labels): {item!r}")
        vid = str(item["id"])
        if not vid or any(c.isspace() for c in vid):
            raise AnnotationError(split_json, i, f"bad video id {vid!r}")
        name = ssv2_template_to_class(str(item["template"]))
        if name not in classes:
            raise AnnotationError(split_json, i, f"unknown label: template {item['template']!r} is not in {labels_json}")
        p = str(root / f"{vid}{extension}")
        if check_files and not os.path.isfile(p):
            raise AnnotationError(split_json, i, f"video not found: {p}")
        entries.append((p, classes[name]))
    if not entries:
        raise AnnotationError(split_json, None, "the list has no entries")
    return entries, classes


# ---------------------------------------------------------------------------------------------
# Images: ImageFolder and iNat21

def read_image_folder(root: str | os.PathLike,
                      extensions: Sequence[str] = IMAGE_EXTENSIONS) -> tuple[list[Entry], dict[str, int]]:
    """An ImageFolder tree `root/<class>/**/<image>`: classes are the sorted sub-folders (as
    torchvision's ImageFolder). Hidden files are ignored; any other non-image file or an empty
    class folder is an error rather than a silent skip."""
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(root, None, "image folder not found")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise AnnotationError(root, None, "no class sub-folders")
    exts = tuple(e.lower() for e in extensions)
    classes = {d.name: k for k, d in enumerate(class_dirs)}
    entries = []
    for d in class_dirs:
        n = 0
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = sorted(x for x in dirnames if not x.startswith("."))
            for fn in sorted(filenames):
                if fn.startswith("."):
                    continue
                p = os.path.join(dirpath, fn)
                if not fn.lower().endswith(exts):
                    raise AnnotationError(p, None, f"not an image file (allowed: {', '.join(exts)})")
                entries.append((p, classes[d.name]))
                n += 1
        if n == 0:
            raise AnnotationError(d, None, "class folder has no images")
    return entries, classes


def read_inat_json(path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                   check_files: bool = True) -> tuple[list[Entry], dict[str, int]]:
    """An iNat21 COCO-like JSON (images, annotations, categories) into entries and a
    category-name -> index map; indices follow ascending category id. Each image needs exactly one
    annotation; `file_name` resolves against `image_root` (default: the JSON's folder)."""
    data, lines = _json_with_lines(path)
    root = Path(image_root) if image_root is not None else Path(path).resolve().parent
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise AnnotationError(path, 1, f"missing list {key!r} (a test JSON has no annotations)")
    cats = {}
    for n, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise AnnotationError(path, lines[("categories", n)], f"category needs integer 'id' and 'name': {c!r}")
        if c["id"] in cats:
            raise AnnotationError(path, lines[("categories", n)], f"category id {c['id']} used twice")
        cats[c["id"]] = str(c["name"])
    cat_index = {cid: k for k, cid in enumerate(sorted(cats))}
    images = {}
    for n, im in enumerate(data["images"]):
        i = lines[("images", n)]
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise AnnotationError(path, i, f"image needs integer 'id' and string 'file_name': {im!r}")
        if im["id"] in images:
            raise AnnotationError(path, i, f"image id {im['id']} used twice")
        p = resolve_path(im["file_name"], root)
        if check_files and not os.path.isfile(p):
            raise AnnotationError(path, i, f"image not found: {p}")
        images[im["id"]] = (p, i)
    labels: dict[int, int] = {}
    for n, a in enumerate(data["annotations"]):
        i = lines[("annotations", n)]
        if not isinstance(a, dict) or not isinstance(a.get("image_id"), int) or not isinstance(a.get("category_id"), int):
            raise AnnotationError(path, i, f"annotation needs integer 'image_id' and 'category_id': {a!r}")
        if a["image_id"] not in images:
            raise AnnotationError(path, i, f"annotation refers to unknown image id {a['image_id']}")
        if a["category_id"] not in cats:
            raise AnnotationError(path, i, f"unknown label: category id {a['category_id']}")
        if a["image_id"] in labels:
            raise AnnotationError(path, i, f"image id {a['image_id']} has a second annotation")
        labels[a["image_id"]] = cat_index[a["category_id"]]
    entries = []
    for iid, (p, i) in images.items():
        if iid not in labels:
            raise AnnotationError(path, i, f"image id {iid} has no annotation")
        entries.append((p, labels[iid]))
    if not entries:
        raise AnnotationError(path, None, "no images")
    return entries, {cats[cid]: k for cid, k in cat_index.items()}
