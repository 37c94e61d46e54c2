"""Readers grow linearly with the file: reading 4x the entries costs about 4x, not 16x (the JSON
reader used to count newlines from the start of the file for each entry). Pinned as a ratio of
CPU times of this process (not wall time, so other load on the machine matters little), the best
of interleaved repeats, against a bound of 8 (linear gives about 4, quadratic about 16). The
absolute times at the real sizes are in benchmarks/bench_scale.py."""

import json
import time

from vjepa.data.readers import AnnotationError, read_inat_json, read_path_label_list, read_ssv2


def _ssv2(tmp_path, n, tag, bad_last=False):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({f"Holding something {k}": str(k) for k in range(174)}, indent=4))
    items = [
        {"id": str(k), "label": "x", "template": f"Holding [something] {k % 174}", "placeholders": ["x"]}
        for k in range(n)
    ]
    if bad_last:
        items[-1]["template"] = "Juggling [something]"
    split = tmp_path / f"ssv2_{tag}.json"
    split.write_text(json.dumps(items, indent=4))
    return lambda: read_ssv2(split, labels, check_files=False)


def _inat(tmp_path, n, tag):
    data = {
        "images": [{"id": k, "file_name": f"train/{k % 50:05d}_x/{k}.jpg", "width": 5, "height": 5} for k in range(n)],
        "annotations": [{"id": k, "image_id": k, "category_id": k % 50} for k in range(n)],
        "categories": [{"id": c, "name": f"species {c}"} for c in range(50)],
    }
    p = tmp_path / f"inat_{tag}.json"
    p.write_text(json.dumps(data))
    return lambda: read_inat_json(p, check_files=False)


def _list(tmp_path, n, tag):
    p = tmp_path / f"list_{tag}.csv"
    p.write_text("".join(f"/data/videos/{k:08d}.mp4 {k % 400}\n" for k in range(n)))
    return lambda: read_path_label_list(p, check_files=False)


def _cpu(fn) -> float:
    t = time.process_time()
    try:
        fn()
    except AnnotationError:
        pass
    return time.process_time() - t


def _ratio(small, big, repeats=3) -> float:
    _cpu(small), _cpu(big)  # warm caches and imports
    a, b = [], []
    for _ in range(repeats):
        a.append(_cpu(small))
        b.append(_cpu(big))
    return min(b) / max(min(a), 1e-4)


def test_reading_four_times_the_entries_costs_about_four_times(tmp_path):
    n = 1500
    cases = {
        "ssv2": (_ssv2(tmp_path, n, "s"), _ssv2(tmp_path, 4 * n, "b")),
        "ssv2 error on the last entry": (_ssv2(tmp_path, n, "se", True), _ssv2(tmp_path, 4 * n, "be", True)),
        "inat": (_inat(tmp_path, n, "s"), _inat(tmp_path, 4 * n, "b")),
        "list": (_list(tmp_path, 10 * n, "s"), _list(tmp_path, 40 * n, "b")),
    }
    ratios = {name: _ratio(*fns) for name, fns in cases.items()}
    assert all(r <= 8 for r in ratios.values()), ratios
    assert all(r >= 1.5 for r in ratios.values()), ratios  # the big file did cost more: the sizes mattered
