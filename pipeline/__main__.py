"""Command line: `python -m pipeline <stage> [key]` runs one DVC stage (DVC calls this);
`python -m pipeline profile <name>` makes profiles/<name>.yaml the active params.yaml;
`python -m pipeline check` validates every section of params.yaml in seconds."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from pipeline import stages
    from pipeline.profiles import available, use_profile

    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("stage", choices=sorted([*stages.STAGES, "profile", "check"]))
    parser.add_argument("key", nargs="?", help="the stage's foreach key (seed, task, grid point) or the profile name")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    if args.stage == "profile":
        if not args.key:
            parser.error(f"name a profile: {', '.join(available())}")
        print(f"params.yaml <- {use_profile(args.key)}: now `dvc repro` runs the '{args.key}' profile")
        return 0
    if args.stage == "check":
        print(f"{args.params}: valid ({', '.join(stages.check(args.params))})")
        return 0
    fn = stages.STAGES[args.stage]
    fn(args.params, args.key) if args.key is not None else fn(args.params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
