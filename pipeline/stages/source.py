"""source@key: the stamp (size and content hash) of one release file a profile names, written to
data/sources/<group>/<key>.json. DVC tracks the file itself as this stage's external dependency,
so an edit to it shows in `dvc status`; the stamp is what the stages of its group depend on, so
they re-run, and nothing else does."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Params
from vjepa.infra.runtime import source_stamp, write_json

OUT = Path("data/sources")


def run(params: Params, key: str | None = None, params_path: str = "params.yaml") -> dict:
    src = (params.sources or {})[key]
    out = {"path": src.path, "stamp": source_stamp(src.path)}
    write_json(OUT / src.group / f"{key}.json", out)
    return out
