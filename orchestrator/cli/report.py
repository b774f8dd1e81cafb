"""``semtune report STUDY``: MLflow → trials table → report folder → back into MLflow.

Order matters: the report is written first (it needs nothing but the store), then the ranks
are tagged and the front members' models logged, then the Kodak grids drawn, and the files are
logged on the parent run last so that MLflow holds the same report as the folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.spec.redact import redact_uri
from trainables.config import ConfigError


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="report a study from MLflow; publish ranks, front models and files")
    p.add_argument("study", help="the study folder (<storage_path>/<name>) or an MLflow experiment name")
    p.add_argument("--out", help="report folder (default: <study folder>/report, or ./report-<experiment>)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (needed for an experiment name unless "
                                          "MLFLOW_TRACKING_URI is set; overrides study.json's)")
    p.add_argument("--pick", help='pick one trial per condition, e.g. "accuracy>=0.85" or "psnr>=30"')
    p.add_argument("--kodak", type=Path, metavar="DIR",
                   help="folder of Kodak PNGs: draw the front members' reconstructions (paper Fig. 5)")
    p.add_argument("--kodak-images", type=int, default=3, metavar="N", help="Kodak images per grid (default 3)")
    p.add_argument("--no-models", action="store_true", help="do not log front members as MLflow models")
    return p


def _check_args(args) -> None:
    from orchestrator.reporting import parse_constraint

    problems = []
    if args.pick is not None:
        try:
            parse_constraint(args.pick)
        except ValueError as err:
            problems.append(("--pick", str(err)))
    if args.kodak is not None and not any(Path(args.kodak).glob("*.png")):
        problems.append(("--kodak", f"{args.kodak} is not a folder of PNG images"))
    if args.kodak_images < 1:
        problems.append(("--kodak-images", f"must be at least 1, got {args.kodak_images}"))
    if problems:
        raise ConfigError(problems)


def summary_lines(ranked, reference, picked=None) -> list[str]:
    """One line per condition and method: front size, hypervolume and, with ``--pick``, the condition's pick."""
    from orchestrator.reporting import hypervolumes

    picks = {} if picked is None else {r["condition"]: r for r in picked.to_dict("records")}
    lines = []
    for h in hypervolumes(ranked, reference).to_dict("records"):
        line = (f"{h['condition']} {h['method']}: {h['n_trials']} trials ({h['n_completed']} completed, {h['n_pruned']} pruned, "
                f"{h['n_failed']} failed), front {h['front_size']}, hypervolume {h['hypervolume']:.4f}")
        p = picks.get(h["condition"])
        if p is not None:
            line += (f"; pick {p['constraint']}: trial {p['trial_id']} (accuracy {p['accuracy']:.4f}, "
                     f"PSNR {p['psnr']:.2f} dB)" if p["result"] == "picked" else f"; pick: {p['note']}")
        lines.append(line)
    return lines


def run_report_command(args) -> int:
    from orchestrator.reporting import conform, pick, rank_trials, write_report
    from orchestrator.tracking.collect import collect, locate_study
    from orchestrator.tracking.publish import load_member, log_front_models, log_report_artifacts, tag_ranks

    _check_args(args)
    source = locate_study(args.study, args.tracking_uri)
    study = collect(source)
    if args.out:
        out = Path(args.out)
    elif Path(args.study).is_dir():
        out = Path(args.study) / "report"
    else:
        out = Path(f"report-{source.experiment_name}")
    files = write_report(study.trials, study.meta, out, pick=args.pick)
    ranked = rank_trials(conform(study.trials))
    client = source.client()
    tag_ranks(client, ranked, study.run_tags)
    notes = [] if args.no_models else log_front_models(source, ranked, study.run_tags)

    if args.kodak is not None:
        from orchestrator.reporting.reconstructions import markdown_section, reconstruction_grids

        run_tags = {r.info.run_id: dict(r.data.tags) for r in (client.get_run(i) for i in ranked.loc[
            ranked["pareto_rank"].eq(1).fillna(False).astype(bool), "mlflow_run_id"])}  # model tags just set
        grids, skipped = reconstruction_grids(
            ranked, lambda row: load_member(source, row, run_tags.get(row["mlflow_run_id"], {})),
            args.kodak, out, n_images=args.kodak_images)
        notes += skipped
        for g in grids:
            files[g.path.stem] = g.path
        if grids:
            with open(files["report_md"], "a", encoding="utf-8") as f:
                f.write(markdown_section(grids))
    logged = log_report_artifacts(client, source.parent_run_id, out, files)

    picked = pick(ranked, args.pick) if args.pick else None
    print(f"report of study {study.meta.study_name!r}: {len(ranked)} trials from {redact_uri(source.tracking_uri)} "
          f"(experiment {source.experiment_id}, parent run {source.parent_run_id})")
    print("\n".join(summary_lines(ranked, study.meta.reference, picked)))
    for note in notes:
        print(f"  {note}")
    print(f"files: {out.resolve()} (report.md, report.html, trials/fronts .parquet/.csv, figures/)")
    print(f"MLflow: {len(logged)} files under {source.parent_run_id}/report/")
    verdict = no_front_line(ranked, study.meta.study_name)
    if verdict:
        print(verdict, file=sys.stderr)
        return 1
    return 0


def no_front_line(ranked, study_name: str) -> str | None:
    """The one ``error:`` line of a report with no completed trial (the tables are still written)."""
    from orchestrator.outcomes import COMPLETED

    if (ranked["status"] == COMPLETED).any():
        return None
    counts = ranked["status"].value_counts()
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    reasons = ranked["failure_reason"].dropna()
    why = f"; most common failure: {reasons.value_counts().index[0]}" if len(reasons) else ""
    return (f"error: STUDY: no trial of study {study_name!r} completed, so no condition has a front "
            f"({len(ranked)} trial{'s' * (len(ranked) != 1)}: {states or 'none'}{why})")
