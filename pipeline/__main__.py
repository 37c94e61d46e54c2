"""Command line for the DVC stages: `python -m pipeline <stage> [key]`."""
from __future__ import annotations

import argparse
import sys

from pipeline import stages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("stage", choices=sorted(stages.STAGES))
    parser.add_argument("key", nargs="?", help="the foreach/matrix key of the stage, if any")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    fn = stages.STAGES[args.stage]
    fn(args.params, args.key) if args.key is not None else fn(args.params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
