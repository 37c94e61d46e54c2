"""Import the official V-JEPA modules (facebookresearch/jepa) from a checkout outside this repository.

The official code is under a non-commercial licence, so nothing of it ships here: the scripts that
compare or benchmark against it take `--official-repo <checkout>` and import it through this one
helper. Obtain a checkout outside the repository, e.g.
    git clone https://github.com/facebookresearch/jepa /path/to/jepa
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

# what the scripts use, as (attribute, module in the checkout)
MODULES = {
    "vit": "src.models.vision_transformer",
    "predictor": "src.models.predictor",
    "multimask": "src.models.utils.multimask",
    "masks": "src.masks.multiblock3d",
    "apply_masks": "src.masks.utils",
    "pooler": "src.models.attentive_pooler",
}


def import_official(repo: str | Path, *names: str) -> SimpleNamespace:
    """Put `repo` first on sys.path and import the named modules of MODULES (all by default);
    raises FileNotFoundError naming the path when it is not a checkout of facebookresearch/jepa."""
    repo = Path(repo).resolve()
    if not (repo / "src" / "models" / "vision_transformer.py").is_file():
        raise FileNotFoundError(
            f"{repo} is not a checkout of facebookresearch/jepa "
            "(no src/models/vision_transformer.py); see the README's benchmark section"
        )
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    return SimpleNamespace(**{n: importlib.import_module(MODULES[n]) for n in (names or MODULES)})


# facebookresearch/vjepa2 (MIT licence), read the same way: its modules also live under `src.`, so they
# are imported with any `src.*` already loaded (a jepa checkout) set aside and put back afterwards
VJEPA2_MODULES = {
    "vit": "src.models.vision_transformer",
    "predictor": "src.models.predictor",
    "modules": "src.models.utils.modules",
    "pooler": "src.models.attentive_pooler",
}


def import_vjepa2(repo: str | Path, *names: str) -> SimpleNamespace:
    """Import the named modules of VJEPA2_MODULES (all by default) from a facebookresearch/vjepa2
    checkout; raises FileNotFoundError naming the path when it is not one (no RoPE attention in it)."""
    repo = Path(repo).resolve()
    modules = repo / "src" / "models" / "utils" / "modules.py"
    if not modules.is_file() or "RoPEAttention" not in modules.read_text():
        raise FileNotFoundError(
            f"{repo} is not a checkout of facebookresearch/vjepa2 (no RoPEAttention in src/models/utils/modules.py)"
        )
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "src" or k.startswith("src.")}
    sys.path.insert(0, str(repo))
    try:
        return SimpleNamespace(**{n: importlib.import_module(VJEPA2_MODULES[n]) for n in (names or VJEPA2_MODULES)})
    finally:
        sys.path.remove(str(repo))
        for k in [k for k in sys.modules if k == "src" or k.startswith("src.")]:
            del sys.modules[k]
        sys.modules.update(saved)
