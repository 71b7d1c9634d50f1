"""summary.md, summary.csv and summary.png of a multirun: the jobs of `sweep` as tables and a figure."""

import csv
from pathlib import Path

import numpy as np

from skin_lightning.errors import UserError
from skin_lightning.results.figures import sweep_figure
from skin_lightning.results.sweep import (
    ALPHA,
    SCORES,
    FoldEnsemble,
    JobRow,
    compare_jobs,
    fold_ensembles,
    group_stats,
    groups,
    job_rows,
    label,
    reference_configuration,
)
from skin_lightning.results.tables import with_interval

CSV_COLUMNS = [
    "job", "configuration", "replicate", "overrides", "status",
    *(f"{name}{part}" for name in SCORES for part in ("", "_low", "_high")),
    *(f"val_{name}" for name in SCORES),
    "reference", "diff", "diff_low", "diff_high", "mcnemar_p", "holm_p", "significant",
]


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def _mean_sd(pair, sign: str = "") -> str:
    if not pair:
        return ""
    mean, sd = pair
    return f"{mean:{sign}.4f}" if np.isnan(sd) else f"{mean:{sign}.4f} ± {sd:.4f}"


def _score_cells(row: JobRow) -> list[str]:
    scores = row.scores
    return [
        with_interval(scores[name], (scores[f"{name}_low"], scores[f"{name}_high"])) if name in scores else ""
        for name in SCORES
    ]


def _comparison_cells(row: JobRow) -> list[str]:
    if row.is_reference:
        return ["reference", ""]
    found = row.comparison
    if found is None:
        return ["", ""]
    mark = " *" if found.significant else ""
    diff = f"{found.diff:+.4f} [{found.diff_low:+.4f}, {found.diff_high:+.4f}]{mark}"
    return [diff, f"{found.mcnemar_p:.4f} ({found.holm_p:.4f}){mark}"]


def csv_row(row: JobRow) -> dict:
    values = {
        "job": row.job, "configuration": row.configuration, "replicate": row.replicate,
        "overrides": row.overrides, "status": row.status, **row.scores,
    }
    if row.is_reference:
        values["reference"] = "reference"
    if row.comparison is not None:
        found = row.comparison
        values.update(
            reference=found.reference, diff=found.diff, diff_low=found.diff_low, diff_high=found.diff_high,
            mcnemar_p=found.mcnemar_p, holm_p=found.holm_p, significant=found.significant,
        )
    return values


def table_lines(rows: list[JobRow], classes: list[str]) -> list[str]:
    recalls = [f"recall/{c}" for c in classes]
    header = [
        "configuration", "job", "status", *(f"{name} [95% CI]" for name in SCORES),
        "Δ balanced_accuracy vs reference [95% CI]", "McNemar p (Holm)", *recalls,
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for config, members in groups(rows).items():
        if len(members) > 1:
            stats = group_stats(config, members, classes)
            significant = (
                f"{stats.significant_runs} of {stats.compared_runs} runs significant" if stats.compared_runs else ""
            )
            cells = [
                f"**{label(config)}**", f"mean ± sd of {stats.runs} runs", f"{stats.runs} of {stats.jobs} completed",
                *(_mean_sd(stats.means.get(name)) for name in SCORES),
                _mean_sd(stats.means.get("diff"), "+"), significant,
                *(_mean_sd(stats.means.get(name)) for name in recalls),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        for row in members:
            name = f"↳ {row.replicate or 'run'}" if len(members) > 1 else label(config)
            cells = [
                name, row.number, row.status, *_score_cells(row), *_comparison_cells(row),
                *(f"{row.scores[r]:.4f}" if r in row.scores else "" for r in recalls),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def ensemble_lines(results: list[FoldEnsemble]) -> list[str]:
    header = [
        "configuration", "fold models", *(f"validation {name} (mean ± sd)" for name in SCORES),
        "fold models' test balanced_accuracy (mean ± sd)", *(f"ensemble test {name} [95% CI]" for name in SCORES),
        "report",
    ]
    lines = [
        "## Cross-validation",
        "",
        "Validation scores of the tested checkpoint of each fold (mean ± sd over folds), and the test scores of the "
        "ensemble that averages the fold models' probabilities on every test image.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for result in results:
        means, metrics = result.group.means, result.metrics
        ensemble_cells = (
            [with_interval(metrics[name], metrics["intervals"][name]) for name in SCORES] if metrics else ["", "", ""]
        )
        cells = [
            label(result.configuration), result.members, *(_mean_sd(means.get(f"val_{name}")) for name in SCORES),
            _mean_sd(means.get("balanced_accuracy")), *ensemble_cells, str(result.report or result.note),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def write_summary(sweep_dir: Path, reference: str | None = None) -> list[JobRow]:
    """summary.csv, summary.md and summary.png at the sweep root, and the fold ensembles' reports."""
    sweep_dir = Path(sweep_dir)
    rows, classes, shared = job_rows(sweep_dir)
    grouped = groups(rows)
    notes, chosen = [], None
    if len(grouped) > 1 and any(row.completed for row in rows):
        try:
            chosen = reference_configuration(rows, reference)
        except UserError as error:
            notes.append(f"{error}; no comparisons until it does")
    if chosen is not None:
        notes += compare_jobs(rows, classes, chosen)
    ensembles = fold_ensembles(sweep_dir, grouped, classes)

    with open(sweep_dir / "summary.csv", "w", newline="") as handle:
        columns = [*CSV_COLUMNS, *(f"recall/{c}" for c in classes)]
        writer = csv.DictWriter(handle, columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(csv_row(row) for row in rows)

    compared = sum(row.comparison is not None for row in rows)
    lines = [
        f"# Sweep summary: {sweep_dir}",
        "",
        "Test-set scores of each job with their 95% intervals [low, high] (see the jobs' report.md for what each "
        "means); balanced accuracy is the mean recall of the classes in the test labels.",
        f"Overrides of every job: `{' '.join(shared) or '(none)'}`; each job's folder is named by its number and "
        "overrides.",
    ]
    if chosen is not None:
        lines.append(
            f"Reference: **{label(chosen)}**. Δ is a job's balanced accuracy minus its reference run's (same seed and "
            "fold), with a paired bootstrap interval over the same test images. McNemar p: exact test on which images "
            f"each got right; in brackets after Holm's correction over the {compared} comparisons. "
            f"\\* marks a difference significant at {ALPHA:.0%} after that correction."
        )
    lines += [f"- note: {note}" for note in notes]
    lines += ["", *table_lines(rows, classes)]
    if ensembles:
        lines += ["", *ensemble_lines(ensembles)]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    reference_name = label(chosen) if chosen is not None else "none"
    sweep_figure(sweep_dir / "summary.png", [row for row in rows if row.completed], classes, SCORES, reference_name)
    return rows
