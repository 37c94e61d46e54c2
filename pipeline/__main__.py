"""Command line: `python -m pipeline <stage> [key]` runs one DVC stage (DVC calls this);
`python -m pipeline profile <name>` makes profiles/<name>.yaml (resolved over its base) the active
params.yaml; `python -m pipeline check [name]` validates params.yaml (or profile <name> resolved),
every grid point included, in seconds."""
from __future__ import annotations

import argparse
import sys

from pipeline.stages import STAGES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("stage", choices=sorted([*STAGES, "profile", "check"]))
    parser.add_argument("key", nargs="?", help="the stage's foreach key (seed, task, grid point) or the profile name")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    from vjepa.config import ConfigError
    try:
        if args.stage == "profile":
            from pipeline.profiles import available, use_profile
            if not args.key:
                print(f"error: name a profile: {', '.join(available())}", file=sys.stderr)
                return 2
            print(f"params.yaml <- {use_profile(args.key)}: now `dvc repro` runs the '{args.key}' profile "
                  f"(metrics/{args.key}/, reports/{args.key}/; its own dvc.lock)")
            return 0
        if args.stage == "check":
            from pipeline.config import SECTIONS, load
            from pipeline.profiles import params_text
            if args.key:
                params_text(args.key)
            else:
                load(args.params)
            print(f"{f'profile {args.key}' if args.key else args.params}: valid ({', '.join(SECTIONS)})")
            return 0
        from pipeline.stages import run
        run(args.stage, args.params, args.key)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # one line, not a traceback: what was done is kept
        again = " ".join(["python -m pipeline", args.stage, *([args.key] if args.key else [])])
        print(f"\ninterrupted: {args.stage} stopped; re-running it (`{again}`, or `dvc repro`) resumes from its "
              "last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
