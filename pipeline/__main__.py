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
    parser.add_argument(
        "--files",
        action="store_true",
        help="check: also read every file a later stage reads (what prepare checks on real data)",
    )
    parser.add_argument(
        "--gpus", type=int, default=None, help="check: print each training stage's global batch on this many GPUs"
    )
    args = parser.parse_args(argv)
    from pipeline.plumbing import StageBusy
    from vjepa.infra.config import ConfigError
    from vjepa.data.readers import AnnotationError

    try:
        if args.stage == "profile":
            from pipeline import profiles

            if not args.key:
                print(f"error: name a profile: {', '.join(profiles.available(profiles.ROOT))}", file=sys.stderr)
                return 2
            src = profiles.use_profile(args.key, profiles.ROOT)
            print(
                f"params.yaml <- {src.relative_to(profiles.ROOT)}: now `dvc repro` runs the '{args.key}' profile "
                f"(metrics/{args.key}/, reports/{args.key}/; its own dvc.lock)"
            )
            return 0
        if args.stage == "check":
            from pipeline.config import SECTIONS, from_mapping, load
            from pipeline.profiles import params_text
            import yaml

            params = (
                from_mapping(yaml.safe_load(params_text(args.key)), f"profiles/{args.key}.yaml")
                if args.key
                else load(args.params)
            )
            print(f"{f'profile {args.key}' if args.key else args.params}: valid ({', '.join(SECTIONS)})")
            if args.gpus:
                for stage, batch in params.global_batches(args.gpus).items():
                    print(f"  global batch of {stage}: {batch}")
            if args.files:
                import importlib
                import json

                prepare = importlib.import_module("pipeline.stages.prepare")  # not a dep of every stage's command
                print(
                    "  files read and checked:",
                    json.dumps(prepare.check_inputs(params), indent=2).replace("\n", "\n  "),
                )
            return 0
        from pipeline.stages import run

        run(args.stage, args.params, args.key)
    except (ConfigError, StageBusy, AnnotationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not isinstance(e, _run_stops()):
            raise
        print(f"error: {args.stage}{' ' + args.key if args.key else ''}: {e}; nothing was published", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # one line, not a traceback: what was done is kept
        again = " ".join(["python -m pipeline", args.stage, *([args.key] if args.key else [])])
        print(
            f"\ninterrupted: {args.stage} stopped; re-running it (`{again}`, or `dvc repro`) resumes from its "
            "last checkpoint",
            file=sys.stderr,
        )
        return 130
    return 0


def _run_stops() -> tuple[type, ...]:
    """The errors by which a stage stops on its data or its numbers (too many undecodable files, a
    non-finite loss): one line, not a traceback. Looked up among the modules the stage imported, so
    that this entry point imports no training code itself (each stage's dvc.yaml deps stay its own)."""
    found = [
        getattr(sys.modules.get(m), c, None)
        for m, c in (("vjepa.data.datasets", "TooManySkipped"), ("vjepa.infra.runtime", "NonFiniteLossError"))
    ]
    return tuple(c for c in found if c is not None)


if __name__ == "__main__":
    sys.exit(main())
