"""The comparison table of a multirun: one row per job, written again after every job ends.

Rebuilding from the job folders after each job (instead of once at the end) means the table
exists even when a job fails or the sweep is interrupted, and a failed job shows as failed.

Jobs whose overrides differ only in `seed` or `data.fold` are runs of one configuration: the
table gives their mean and standard deviation, and the runs below. Every job is compared with
the reference configuration's run of the same seed and fold on the same test images, and the
comparisons are corrected together for multiple testing, so the table says which differences
the test set can actually support.
"""

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from skin_lightning.results.comparisons import Predictions, aligned, ensemble, paired_comparison, read_predictions  # noqa: E402
from skin_lightning.config import run_name  # noqa: E402
from skin_lightning.errors import UserError  # noqa: E402
from skin_lightning.results.reports import REPORT, write_reports  # noqa: E402
from skin_lightning.results.tables import with_interval  # noqa: E402
from skin_lightning.results.stats import holm, mean_sd  # noqa: E402

log = logging.getLogger(__name__)

SCORES = ("accuracy", "balanced_accuracy", "macro_f1")
REPLICATE_KEYS = ("seed", "data.fold")  # runs of one configuration differ only in these
IGNORED_KEYS = ("summary.reference",)  # chooses how the sweep is read, not what a job trains
ALPHA = 0.05
ENSEMBLE_DIR = "ensembles"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def configuration(overrides: list[str]) -> list[str]:
    """The overrides that define what a job trains, without the seed and fold that replicate it."""
    return [o for o in overrides if _key(o) not in REPLICATE_KEYS + IGNORED_KEYS]


def _label(config: str) -> str:
    return config or "(all jobs)"


def _number(row: dict) -> str:
    """The job number, which leads its folder name; the whole name is in summary.csv."""
    return row["job"].split("_")[0]


def job_rows(sweep_dir: Path) -> tuple[list[dict], list[str], list[str]]:
    """One row per job folder, its configuration named by the overrides that not every job shares.

    Returns the rows, the class names, and the overrides every job shares.
    """
    rows, classes = [], []
    job_dirs = sorted(
        (p.parent.parent for p in Path(sweep_dir).glob("*/.hydra/overrides.yaml")),
        key=lambda d: (int(d.name.split("_")[0]) if d.name.split("_")[0].isdigit() else 1 << 30, d.name),
    )
    for job_dir in job_dirs:
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
        row = {
            "job": job_dir.name,
            "job_dir": job_dir,
            "overrides": " ".join(overrides),
            "setting": configuration(overrides),
            "replicate": " ".join(o for o in overrides if _key(o) in REPLICATE_KEYS),
        }
        metrics_file, error_file = job_dir / "metrics.json", job_dir / "error.txt"
        if metrics_file.exists():
            metrics = json.loads(metrics_file.read_text())
            classes = classes or metrics["classes"]
            row["status"] = "completed"
            row.update({name: metrics[name] for name in SCORES})
            row.update({f"{name}_low": metrics["intervals"][name][0] for name in SCORES})
            row.update({f"{name}_high": metrics["intervals"][name][1] for name in SCORES})
            row.update({f"recall/{c}": metrics["per_class"][c]["recall"] for c in metrics["classes"]})
            validation = metrics.get("validation") or {}
            row.update({f"val_{name}": validation[name] for name in SCORES if name in validation})
            row["fold"] = validation.get("fold")
        elif error_file.exists():
            row["status"] = "failed: " + error_file.read_text().strip().splitlines()[-1][:200]
        else:
            row["status"] = "not finished"
        rows.append(row)
    shared = [o for o in rows[0]["setting"] if all(o in row["setting"] for row in rows)] if rows else []
    for row in rows:
        row["setting"] = [o for o in row["setting"] if o not in shared]
        row["configuration"] = " ".join(row["setting"])
    return rows, classes, shared


def reference_configuration(rows: list[dict], reference: str | None) -> str:
    """The configuration every other one is compared with: the first job's, or the one `reference` names.

    `reference` names a configuration by its overrides as the summary prints them (quoted on the
    command line: summary.reference='"experiment=v2_weighted"'), or by the value of one of them
    (summary.reference=v2_weighted), as long as that picks out exactly one configuration.
    """
    settings = {row["configuration"]: row["setting"] for row in rows}
    configs = list(settings)
    if reference is None:
        completed = [row["configuration"] for row in rows if row["status"] == "completed"]
        if not completed:
            raise UserError("no job of the sweep has completed yet, so there is no reference")
        return completed[0]
    matches = [
        config for config in configs
        if reference in (config, _label(config)) or reference in (o.split("=", 1)[-1] for o in settings[config])
    ]
    if len(matches) != 1:
        found = "matches no configuration" if not matches else "matches several configurations"
        raise UserError(
            f"summary.reference={reference} {found} of this sweep; name one of: "
            + "; ".join(_label(config) for config in configs)
        )
    return matches[0]


def compare_jobs(rows: list[dict], classes: list[str], reference: str) -> list[str]:
    """Add each job's paired comparison with its reference run; returns notes for the summary.

    The partner is the reference configuration's run with the same seed and fold, or its only
    run. Holm's correction runs over every comparison of the sweep.
    """
    notes, cache = [], {}

    def predictions(row: dict) -> Predictions:
        if row["job"] not in cache:
            cache[row["job"]] = read_predictions(row["job_dir"], classes)
        return cache[row["job"]]

    done = [row for row in rows if row["status"] == "completed"]
    references = [row for row in done if row["configuration"] == reference]
    for row in references:
        row["reference"] = "reference"
    compared = []
    for row in done:
        if row["configuration"] == reference:
            continue
        partner = next((ref for ref in references if ref["replicate"] == row["replicate"]), None)
        if partner is None and len(references) == 1:
            partner = references[0]
        if partner is None:
            notes.append(f"{row['job']}: no completed reference run with {row['replicate'] or 'the same seed and fold'}")
            continue
        try:
            other = aligned(predictions(partner), predictions(row))
        except UserError as error:
            notes.append(f"{row['job']}: not compared: {error}")
            continue
        if other is None:
            notes.append(f"{row['job']}: tested on other images than {partner['job']}, so not compared")
            continue
        row.update(paired_comparison(predictions(partner), other, len(classes)), reference=partner["job"])
        compared.append(row)
    for row, adjusted in zip(compared, holm([row["mcnemar_p"] for row in compared])):
        row["holm_p"] = adjusted
        row["significant"] = adjusted < ALPHA
    return notes


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """Jobs by configuration, in the order the sweep ran them."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["configuration"], []).append(row)
    return grouped


def group_row(config: str, members: list[dict], classes: list[str]) -> dict:
    """Mean, SD and number of completed runs of every score of one configuration."""
    done = [row for row in members if row["status"] == "completed"]
    row = {"configuration": config, "runs": len(done), "jobs": len(members)}
    for name in [*SCORES, *(f"recall/{c}" for c in classes), *(f"val_{s}" for s in SCORES), "diff"]:
        values = [member[name] for member in done if name in member]
        if values:
            row[name] = mean_sd(values)[:2]
    compared = [member for member in done if "significant" in member]
    if compared:
        row["significant_runs"] = sum(member["significant"] for member in compared)
        row["compared_runs"] = len(compared)
    return row


def fold_ensembles(sweep_dir: Path, grouped: dict[str, list[dict]], classes: list[str]) -> list[dict]:
    """Test reports of each cross-validated configuration's fold models, probabilities averaged.

    Every fold model saw a different 1/k of Train as validation data; averaging them on the test
    set uses all of Train and is usually better than any single fold model.
    """
    results = []
    for config, members in grouped.items():
        folds = [row for row in members if row["status"] == "completed" and row.get("fold") is not None]
        if len(folds) < 2:
            continue
        result = {"configuration": config, "members": len(folds), "group": group_row(config, folds, classes)}
        try:
            combined = ensemble([read_predictions(row["job_dir"], classes) for row in folds])
        except UserError as error:
            combined, result["note"] = None, f"no ensemble: {error}"
        if combined is None:
            result.setdefault("note", "fold models were tested on different images: no ensemble")
        else:
            folder = Path(sweep_dir) / ENSEMBLE_DIR / run_name(",".join(folds[0]["setting"]) or "all_jobs")
            folder.mkdir(parents=True, exist_ok=True)
            metrics = write_reports(
                folder, combined.probs, combined.labels, combined.paths, classes,
                extra={"ensemble_of": [row["job"] for row in folds]},
            )
            result.update(metrics=metrics, report=folder.relative_to(sweep_dir) / f"{REPORT}.md")
        results.append(result)
    return results


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def _mean_sd(pair, sign: str = "") -> str:
    if not pair:
        return ""
    mean, sd = pair
    return f"{mean:{sign}.4f}" if np.isnan(sd) else f"{mean:{sign}.4f} ± {sd:.4f}"


def _score_cells(row: dict) -> list[str]:
    return [with_interval(row[name], (row[f"{name}_low"], row[f"{name}_high"])) if name in row else "" for name in SCORES]


def _comparison_cells(row: dict) -> list[str]:
    if row.get("reference") == "reference":
        return ["reference", ""]
    if "diff" not in row:
        return ["", ""]
    mark = " *" if row["significant"] else ""
    diff = f"{row['diff']:+.4f} [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]{mark}"
    return [diff, f"{row['mcnemar_p']:.4f} ({row['holm_p']:.4f}){mark}"]


def table_lines(rows: list[dict], classes: list[str]) -> list[str]:
    recalls = [f"recall/{c}" for c in classes]
    header = [
        "configuration", "job", "status", *(f"{name} [95% CI]" for name in SCORES),
        "Δ balanced_accuracy vs reference [95% CI]", "McNemar p (Holm)", *recalls,
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for config, members in groups(rows).items():
        if len(members) > 1:
            summary = group_row(config, members, classes)
            significant = (
                f"{summary['significant_runs']} of {summary['compared_runs']} runs significant"
                if "compared_runs" in summary else ""
            )
            cells = [
                f"**{_label(config)}**", f"mean ± sd of {summary['runs']} runs", f"{summary['runs']} of {summary['jobs']} completed",
                *(_mean_sd(summary.get(name)) for name in SCORES),
                _mean_sd(summary.get("diff"), "+"), significant, *(_mean_sd(summary.get(name)) for name in recalls),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        for row in members:
            label = f"↳ {row['replicate'] or 'run'}" if len(members) > 1 else _label(config)
            cells = [
                label, _number(row), row["status"], *_score_cells(row), *_comparison_cells(row),
                *(f"{row[name]:.4f}" if name in row else "" for name in recalls),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def ensemble_lines(results: list[dict]) -> list[str]:
    header = [
        "configuration", "fold models", *(f"validation {name} (mean ± sd)" for name in SCORES),
        "fold models' test balanced_accuracy (mean ± sd)", *(f"ensemble test {name} [95% CI]" for name in SCORES), "report",
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
        group = result["group"]
        metrics = result.get("metrics")
        ensemble_cells = (
            [with_interval(metrics[name], metrics["intervals"][name]) for name in SCORES] if metrics else ["", "", ""]
        )
        cells = [
            _label(result["configuration"]), result["members"], *(_mean_sd(group.get(f"val_{name}")) for name in SCORES),
            _mean_sd(group.get("balanced_accuracy")), *ensemble_cells, str(result.get("report", result.get("note", ""))),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


CSV_COLUMNS = [
    "job", "configuration", "replicate", "overrides", "status",
    *(f"{name}{part}" for name in SCORES for part in ("", "_low", "_high")),
    *(f"val_{name}" for name in SCORES),
    "reference", "diff", "diff_low", "diff_high", "mcnemar_p", "holm_p", "significant",
]


def write_summary(sweep_dir: Path, reference: str | None = None) -> list[dict]:
    """summary.csv, summary.md and summary.png at the sweep root, and the fold ensembles' reports."""
    sweep_dir = Path(sweep_dir)
    rows, classes, shared = job_rows(sweep_dir)
    grouped = groups(rows)
    notes, chosen = [], None
    if len(grouped) > 1 and any(row["status"] == "completed" for row in rows):
        try:
            chosen = reference_configuration(rows, reference)
        except UserError as error:
            notes.append(f"{error}; no comparisons until it does")
    if chosen is not None:
        notes += compare_jobs(rows, classes, chosen)
    ensembles = fold_ensembles(sweep_dir, grouped, classes)

    with open(sweep_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, [*CSV_COLUMNS, *(f"recall/{c}" for c in classes)], restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    compared = sum("significant" in row for row in rows)
    lines = [
        f"# Sweep summary: {sweep_dir}",
        "",
        "Test-set scores of each job with their 95% bootstrap intervals [low, high]; balanced accuracy is the mean "
        "per-class recall.",
        f"Overrides of every job: `{' '.join(shared) or '(none)'}`; each job's folder is named by its number and overrides.",
    ]
    if chosen is not None:
        lines += [
            f"Reference: **{_label(chosen)}**. Δ is a job's balanced accuracy minus its reference run's (same seed and "
            "fold), with a paired bootstrap interval over the same test images. McNemar p: exact test on which images "
            f"each got right; in brackets after Holm's correction over the {compared} comparisons. "
            f"\\* marks a difference significant at {ALPHA:.0%} after that correction.",
        ]
    lines += [f"- note: {note}" for note in notes]
    lines += ["", *table_lines(rows, classes)]
    if ensembles:
        lines += ["", *ensemble_lines(ensembles)]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    _plot(sweep_dir / "summary.png", rows, classes, chosen)
    return rows


def _plot(path: Path, rows: list[dict], classes: list[str], reference: str | None) -> None:
    """Scores with their intervals, differences from the reference (significant ones in red), recalls."""
    done = [row for row in rows if row["status"] == "completed"]
    names = [f"{_number(row)}: {' '.join(filter(None, (row['configuration'], row['replicate']))) or row['job']}" for row in done]
    figure, (scores, diffs, heat) = plt.subplots(
        1, 3, figsize=(10 + 0.8 * len(classes), 1.8 + 0.5 * max(1, len(done))),
        gridspec_kw={"width_ratios": [1.2, 1, 0.15 * max(4, len(classes))]},
    )
    positions = np.arange(len(done))
    offset = 0.8 / len(SCORES)
    for k, score in enumerate(SCORES):
        values = np.array([row[score] for row in done])
        errors = np.array([[row[score] - row[f"{score}_low"], row[f"{score}_high"] - row[score]] for row in done]).reshape(-1, 2).T
        scores.errorbar(values, positions + (k - 1) * offset, xerr=np.clip(errors, 0, None), fmt="o", capsize=3, label=score)
    scores.set_yticks(positions, names, fontsize=8)
    scores.set_ylim(len(done) - 0.5, -0.5)
    scores.set_xlim(0, 1)
    scores.legend(fontsize=7, loc="best")
    scores.set_title("test scores, 95% intervals")

    for i, row in enumerate(done):
        if "diff" in row:
            colour = "tab:red" if row["significant"] else "tab:gray"
            error = [[max(0.0, row["diff"] - row["diff_low"])], [max(0.0, row["diff_high"] - row["diff"])]]
            diffs.errorbar(row["diff"], i, xerr=error, fmt="o", color=colour, capsize=3)
            if row["significant"]:
                diffs.annotate("*", (row["diff_high"], i), xytext=(4, -4), textcoords="offset points", color=colour)
        elif row.get("reference") == "reference":
            diffs.plot(0, i, "D", color="black")
    diffs.axvline(0, color="black", linewidth=0.8)
    diffs.set_yticks(positions, [""] * len(done))
    diffs.set_ylim(len(done) - 0.5, -0.5)
    reference_name = _label(reference) if reference is not None else "none"
    diffs.set_title(f"Δ balanced accuracy vs {reference_name}\n(red *: significant after Holm)", fontsize=9)

    recalls = np.array([[row[f"recall/{c}"] for c in classes] for row in done]).reshape(len(done), len(classes))
    image = heat.imshow(recalls, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    heat.set_xticks(range(len(classes)), classes, rotation=45)
    heat.set_yticks(positions, [_number(row) for row in done])
    for (i, j), value in np.ndenumerate(recalls):
        heat.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.5 else "black")
    heat.set_title("recall per class")
    figure.colorbar(image, ax=heat)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


class SweepSummary(Callback):
    """Hydra callback: after each job of a multirun, rewrite the sweep's summary."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        write_summary(sweep_dir, OmegaConf.select(config, "summary.reference"))
        log.info("sweep summary: %s", sweep_dir / "summary.md")


def main(argv: list[str] | None = None) -> None:
    """Rebuild a sweep's summary, for instance against another reference, without rerunning it."""
    parser = argparse.ArgumentParser(prog="python -m skin_lightning.summary", description=main.__doc__)
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder, e.g. outputs/multirun/2025-01-01_12-00-00")
    parser.add_argument("--reference", help="configuration to compare with (default: the first job's)")
    args = parser.parse_args(argv)
    try:
        rows = job_rows(args.sweep_dir)[0]
        if not rows:
            raise UserError(f"{args.sweep_dir} holds no sweep jobs (no */.hydra/overrides.yaml)")
        reference_configuration(rows, args.reference)
    except UserError as error:
        sys.exit(f"error: {error}")
    write_summary(args.sweep_dir, args.reference)
    print(args.sweep_dir / "summary.md")


if __name__ == "__main__":
    main()
