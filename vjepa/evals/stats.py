"""Paired comparisons of two encoders (or two pretraining settings) from their per-clip outcomes on
the same validation clips: a paired bootstrap over clips and seeds, its 95% interval, and a verdict
that says "not distinguishable" where the interval covers zero.

Why not the seed-to-seed spread: three seeds give a standard deviation that can be zero (three equal
margins) while the margin rests on a handful of clips; pairing the predictions clip by clip counts
the clips on which the two actually disagree. Why our own resampler rather than
scipy.stats.bootstrap: the resampling here is two-level (seeds, then the same clips for every seed,
so the clip-level pairing and the cross-seed correlation survive), which scipy's does not offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEST = "paired bootstrap over validation clips and seeds"


@dataclass
class PairedComparison:
    """A − B in top-1 points (mean over seeds of the per-seed accuracy difference), its interval, and
    per seed the discordant clips: (A right and B wrong, A wrong and B right)."""

    difference: float
    low: float
    high: float
    level: float
    seeds: int
    clips: int
    discordant: list[tuple[int, int]]
    resamples: int

    @property
    def verdict(self) -> str:
        """ "better" or "worse" when the interval excludes zero, else "not distinguishable"."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "not distinguishable"

    @property
    def test(self) -> str:
        what = TEST if self.seeds > 1 else "paired bootstrap over validation clips (one seed)"
        return f"{what}, {self.resamples:,} resamples, percentile interval"

    def describe(self) -> str:
        """`+1.3 points, 95% interval [-0.7, +3.3]`, the discordant clips and the test."""
        disc = ", ".join(f"{a}/{b}" for a, b in self.discordant)
        return (
            f"{self.difference:+.1f} points, {100 * self.level:.0f}% interval [{self.low:+.1f}, {self.high:+.1f}] "
            f"({self.test}; {self.clips} clips x {self.seeds} seed{'s' if self.seeds > 1 else ''}; "
            f"clips only the first / only the second gets right, per seed: {disc})"
        )


def paired_bootstrap(a, b, resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> PairedComparison:
    """Compare per-clip outcomes `a` and `b` (1 = correct), arrays [seeds, clips] or [clips], clip j
    being the same validation clip in both and in every seed. Each resample draws seeds with
    replacement and one set of clips with replacement shared by all seeds; the statistic is the mean
    over the drawn seeds of the accuracy difference on the drawn clips, in points."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.int8)), np.atleast_2d(np.asarray(b, dtype=np.int8))
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("no paired outcomes to compare")
    if not np.isin(a, (0, 1)).all() or not np.isin(b, (0, 1)).all():
        raise ValueError("outcomes must be 0 (wrong) or 1 (right)")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    d = (a - b).astype(np.float64)  # [S, N] in {-1, 0, 1}
    S, N = d.shape
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    chunk = max(1, 2_000_000 // (S * N))  # bounded memory
    for lo in range(0, resamples, chunk):
        hi = min(resamples, lo + chunk)
        clips = rng.integers(0, N, size=(hi - lo, N))
        seeds = rng.integers(0, S, size=(hi - lo, S))
        per_seed = d[:, clips].mean(axis=2).T  # [R, S]: each seed on the drawn clips
        stats[lo:hi] = np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return PairedComparison(
        difference=100 * float(d.mean()),
        low=100 * float(low),
        high=100 * float(high),
        level=level,
        seeds=S,
        clips=N,
        discordant=[(int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())) for x, y in zip(a, b)],
        resamples=resamples,
    )


def clip_outcomes(run_dir: str | Path, metrics: dict) -> dict:
    """Per-clip outcomes of the best probe of each kind in a `vjepa.evals.probe.run_probe` output folder
    (its predictions.csv and returned metrics): {"index": [dataset index per clip], "probe": {kind:
    name}, "correct": {kind: "0110..." one character per clip, in index order}}. Compact enough to sit
    in a stage's metrics JSON, so a report can pair two encoders clip by clip without the run folder."""
    import pandas as pd

    path = Path(run_dir) / "predictions.csv"
    table = pd.read_csv(path)
    best = metrics["best_probe_by_kind"]
    out = {"index": None, "probe": dict(best), "correct": {}}
    for kind, name in sorted(best.items()):
        rows = table[table["probe"] == name].sort_values("index")
        if rows.empty:
            raise ValueError(f"{path}: no predictions of probe {name!r}")
        index = rows["index"].astype(int).tolist()
        if out["index"] is None:
            out["index"] = index
        elif index != out["index"]:
            raise ValueError(f"{path}: probe {name!r} was evaluated on other clips than {best[min(best)]!r}")
        out["correct"][kind] = "".join("1" if p == y else "0" for p, y in zip(rows["predicted"], rows["label"]))
    return out


def paired_outcomes(first: list[dict], second: list[dict], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Stack the `clip_outcomes` of the same runs (one per seed) of two encoders for probe `kind`
    into [seeds, clips] arrays, restricted to the clips every run evaluated (a clip that failed to
    decode in one run drops out of all). Raises ValueError when nothing pairs."""
    if len(first) != len(second) or not first:
        raise ValueError(f"need the same number of runs of both encoders, got {len(first)} and {len(second)}")
    maps = [dict(zip(o["index"], o["correct"][kind])) for o in (*first, *second)]
    common = sorted(set.intersection(*(set(m) for m in maps)))
    if not common:
        raise ValueError("the two encoders' runs share no validation clip")
    arr = np.array([[int(m[i]) for i in common] for m in maps], dtype=np.int8)
    return arr[: len(first)], arr[len(first) :]
