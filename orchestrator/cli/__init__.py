"""The ``semtune`` command line: every command is declared here, and each runs from its own module.

Expected failures (a bad study or config file, a missing path, a failed preflight) print
``error: <field>: <reason>`` lines and exit with code 2, never a traceback; anything else is a bug
and keeps its traceback. A study that ends without a front in every condition exits with 1, an
interrupted one with 130.
"""

from __future__ import annotations

import argparse
import sys

from trainables.config import ConfigError

EXIT_INVALID = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semtune", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("trial", help="run one configuration without Ray")
    t.add_argument("config", help="trial config YAML (fields of trainables.config.TrialConfig)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set codec.kn=0.0833 (repeatable)")
    t.add_argument("--out", help="output folder (default: semtune-trial-<config hash>)")
    t.add_argument("--resume", action="store_true", help="continue from the output folder's checkpoint")

    v = sub.add_parser("validate", help="check a study file; print every problem")
    v.add_argument("study", help="study YAML")

    r = sub.add_parser("run", help="run a study (resumes it if its folder already holds it)")
    r.add_argument("study", help="study YAML")

    s = sub.add_parser("resume", help="resume an interrupted study from its folder")
    s.add_argument("study_dir", help="the study folder (<storage_path>/<name>)")
    for cmd in (r, s):
        cmd.add_argument("--verbose", "-v", action="store_true",
                         help="show Ray's, Tune's, MLflow's and Optuna's own output (always in <study>/semtune.log)")

    from orchestrator.cli.report import add_report_parser

    add_report_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "trial":
            from orchestrator.cli.trial import run_trial_command

            return run_trial_command(args.config, args.overrides, args.out, args.resume)
        if args.command == "validate":
            from orchestrator.spec import condition_grid, load_spec, study_arms

            spec = load_spec(args.study)
            n, trials = len(condition_grid(spec)), sum(a.trials for a in study_arms(spec))
            print(f"ok: study {spec.name!r}: {n} conditions x methods {', '.join(spec.methods)}, {trials} trials, "
                  f"sampler {spec.sampler.name}, pruner {spec.pruner.name}")
            return 0
        if args.command in ("run", "resume"):
            from orchestrator.spec import load_spec
            from orchestrator.study.outcome import summary_lines, verdict_line
            from orchestrator.study.runner import resume_study, run_study

            if args.command == "run":
                outcome = run_study(load_spec(args.study), verbose=args.verbose)
            else:
                outcome = resume_study(args.study_dir, verbose=args.verbose)
            print("\n".join(summary_lines(outcome)))
            verdict = verdict_line(outcome)
            if verdict:
                print(verdict, file=sys.stderr)
            return outcome.exit_code
        if args.command == "report":
            from orchestrator.cli.report import run_report_command

            return run_report_command(args)
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return EXIT_INVALID
    except FileNotFoundError as err:
        if err.errno is not None and err.filename is None:  # no path of the user's: e.g. a vanished cwd
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
