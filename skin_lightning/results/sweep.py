"""The jobs of a multirun, read back from their folders, grouped, compared and ensembled.

Rebuilding from the job folders after each job (instead of once at the end) means the summary
exists even when a job fails or the sweep is interrupted, and a failed job shows as failed.

Jobs whose overrides differ only in `seed` or `data.fold` are runs of one configuration. Every job
is compared with the reference configuration's run of the same seed and fold on the same test
images, and the comparisons are corrected together for multiple testing, so the summary says which
differences the test set can actually support.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from skin_lightning.errors import UserError
from skin_lightning.results.comparisons import Predictions, aligned, ensemble, paired_comparison, read_predictions
from skin_lightning.results.reports import REPORT, write_reports
from skin_lightning.results.stats import holm, mean_sd

SCORES = ("accuracy", "balanced_accuracy", "macro_f1")
REPLICATE_KEYS = ("seed", "data.fold")  # runs of one configuration differ only in these
IGNORED_KEYS = ("summary.reference",)  # chooses how the sweep is read, not what a job trains
ALPHA = 0.05
ENSEMBLE_DIR = "ensembles"


def run_name(override_dirname: str) -> str:
    """A folder name from a job's overrides, key-value joined by __: readable in TensorBoard, and a path that
    goes back on a command line unquoted (ckpt_path=..., hydra.run.dir=...), where Hydra refuses = and ,."""
    name = override_dirname.replace("=", "-").replace(",", "__")
    name = re.sub(r"[^\w.+-]+", "_", name, flags=re.ASCII).strip("_")
    return name[:200] or "defaults"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def configuration(overrides: list[str]) -> list[str]:
    """The overrides that define what a job trains, without the seed and fold that replicate it."""
    return [o for o in overrides if _key(o) not in REPLICATE_KEYS + IGNORED_KEYS]


def label(config: str) -> str:
    return config or "(all jobs)"


@dataclass(frozen=True)
class Comparison:
    """A job against its reference run: Δ balanced accuracy with its paired interval, McNemar's p and Holm's."""

    reference: str
    diff: float
    diff_low: float
    diff_high: float
    mcnemar_p: float
    holm_p: float = float("nan")

    @property
    def significant(self) -> bool:
        return self.holm_p < ALPHA


@dataclass
class JobRow:
    """One job folder. `scores` holds the test scores with their _low/_high bounds, val_* and recall/<class>."""

    job: str
    job_dir: Path
    overrides: str
    setting: list[str]
    replicate: str
    status: str = "not finished"
    scores: dict[str, float] = field(default_factory=dict)
    fold: int | None = None
    is_reference: bool = False
    comparison: Comparison | None = None

    @property
    def configuration(self) -> str:
        return " ".join(self.setting)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def number(self) -> str:
        """The job number, which leads its folder name; the whole name is in summary.csv."""
        return self.job.split("_")[0]


def read_job(job_dir: Path) -> tuple[JobRow, list[str]]:
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    row = JobRow(
        job=job_dir.name,
        job_dir=job_dir,
        overrides=" ".join(overrides),
        setting=configuration(overrides),
        replicate=" ".join(o for o in overrides if _key(o) in REPLICATE_KEYS),
    )
    metrics_file, error_file = job_dir / "metrics.json", job_dir / "error.txt"
    if not metrics_file.exists():
        if error_file.exists():
            row.status = "failed: " + error_file.read_text().strip().splitlines()[-1][:200]
        return row, []
    metrics = json.loads(metrics_file.read_text())
    row.status = "completed"
    for name in SCORES:
        low, high = metrics["intervals"][name]
        row.scores.update({name: metrics[name], f"{name}_low": low, f"{name}_high": high})
    row.scores.update({f"recall/{c}": metrics["per_class"][c]["recall"] for c in metrics["classes"]})
    validation = metrics.get("validation") or {}
    row.scores.update({f"val_{name}": validation[name] for name in SCORES if name in validation})
    row.fold = validation.get("fold")
    return row, metrics["classes"]


def job_rows(sweep_dir: Path) -> tuple[list[JobRow], list[str], list[str]]:
    """One row per job folder, its configuration named by the overrides that not every job shares.

    Returns the rows, the class names, and the overrides every job shares.
    """
    job_dirs = sorted(
        (p.parent.parent for p in Path(sweep_dir).glob("*/.hydra/overrides.yaml")),
        key=lambda d: (int(d.name.split("_")[0]) if d.name.split("_")[0].isdigit() else 1 << 30, d.name),
    )
    rows, classes = [], []
    for job_dir in job_dirs:
        row, found = read_job(job_dir)
        rows.append(row)
        classes = classes or found
    shared = [o for o in rows[0].setting if all(o in row.setting for row in rows)] if rows else []
    for row in rows:
        row.setting = [o for o in row.setting if o not in shared]
    return rows, classes, shared


def reference_configuration(rows: list[JobRow], reference: str | None) -> str:
    """The configuration every other one is compared with: the first job's, or the one `reference` names.

    `reference` names a configuration by its overrides as the summary prints them (quoted on the
    command line: summary.reference='"experiment=v2_weighted"'), or by the value of one of them
    (summary.reference=v2_weighted), as long as that picks out exactly one configuration.
    """
    settings = {row.configuration: row.setting for row in rows}
    if reference is None:
        completed = [row.configuration for row in rows if row.completed]
        if not completed:
            raise UserError("no job of the sweep has completed yet, so there is no reference")
        return completed[0]
    matches = [
        config
        for config, setting in settings.items()
        if reference in (config, label(config)) or reference in (o.split("=", 1)[-1] for o in setting)
    ]
    if len(matches) != 1:
        found = "matches no configuration" if not matches else "matches several configurations"
        raise UserError(
            f"summary.reference={reference} {found} of this sweep; name one of: " + "; ".join(map(label, settings))
        )
    return matches[0]


def compare_jobs(rows: list[JobRow], classes: list[str], reference: str) -> list[str]:
    """Set each job's paired comparison with its reference run; returns notes for the summary.

    The partner is the reference configuration's run with the same seed and fold, or its only
    run. Holm's correction runs over every comparison of the sweep.
    """
    notes, cache = [], {}

    def predictions(row: JobRow) -> Predictions:
        if row.job not in cache:
            cache[row.job] = read_predictions(row.job_dir, classes)
        return cache[row.job]

    done = [row for row in rows if row.completed]
    references = [row for row in done if row.configuration == reference]
    for row in references:
        row.is_reference = True
    compared = []
    for row in done:
        if row.is_reference:
            continue
        partner = next((ref for ref in references if ref.replicate == row.replicate), None)
        if partner is None and len(references) == 1:
            partner = references[0]
        if partner is None:
            notes.append(f"{row.job}: no completed reference run with {row.replicate or 'the same seed and fold'}")
            continue
        try:
            other = aligned(predictions(partner), predictions(row))
        except UserError as error:
            notes.append(f"{row.job}: not compared: {error}")
            continue
        if other is None:
            notes.append(f"{row.job}: tested on other images than {partner.job}, so not compared")
            continue
        compared.append((row, partner.job, paired_comparison(predictions(partner), other, len(classes))))
    adjusted = holm([found["mcnemar_p"] for _, _, found in compared])
    for (row, partner, found), holm_p in zip(compared, adjusted):
        row.comparison = Comparison(reference=partner, holm_p=holm_p, **found)
    return notes


def groups(rows: list[JobRow]) -> dict[str, list[JobRow]]:
    """Jobs by configuration, in the order the sweep ran them."""
    grouped: dict[str, list[JobRow]] = {}
    for row in rows:
        grouped.setdefault(row.configuration, []).append(row)
    return grouped


@dataclass(frozen=True)
class GroupStats:
    """Mean and SD over the completed runs of one configuration, by score name (and "diff")."""

    configuration: str
    runs: int
    jobs: int
    means: dict[str, tuple[float, float]]
    significant_runs: int
    compared_runs: int


def group_stats(config: str, members: list[JobRow], classes: list[str]) -> GroupStats:
    done = [row for row in members if row.completed]
    means = {}
    for name in [*SCORES, *(f"recall/{c}" for c in classes), *(f"val_{s}" for s in SCORES)]:
        values = [row.scores[name] for row in done if name in row.scores]
        if values:
            means[name] = mean_sd(values)[:2]
    compared = [row.comparison for row in done if row.comparison is not None]
    if compared:
        means["diff"] = mean_sd([found.diff for found in compared])[:2]
    significant = sum(found.significant for found in compared)
    return GroupStats(config, len(done), len(members), means, significant, len(compared))


@dataclass(frozen=True)
class FoldEnsemble:
    configuration: str
    members: int
    group: GroupStats
    metrics: dict | None = None
    report: Path | None = None
    note: str = ""


def fold_ensembles(sweep_dir: Path, grouped: dict[str, list[JobRow]], classes: list[str]) -> list[FoldEnsemble]:
    """Test reports of each cross-validated configuration's fold models, probabilities averaged.

    Every fold model saw a different 1/k of Train as validation data; averaging them on the test
    set uses all of Train and is usually better than any single fold model.
    """
    results = []
    for config, members in grouped.items():
        folds = [row for row in members if row.completed and row.fold is not None]
        if len(folds) < 2:
            continue
        group = group_stats(config, folds, classes)
        try:
            combined = ensemble([read_predictions(row.job_dir, classes) for row in folds])
        except UserError as error:
            results.append(FoldEnsemble(config, len(folds), group, note=f"no ensemble: {error}"))
            continue
        if combined is None:
            results.append(
                FoldEnsemble(config, len(folds), group, note="fold models were tested on different images: no ensemble")
            )
            continue
        folder = Path(sweep_dir) / ENSEMBLE_DIR / run_name(",".join(folds[0].setting) or "all_jobs")
        folder.mkdir(parents=True, exist_ok=True)
        metrics = write_reports(
            folder,
            combined.probs,
            combined.labels,
            combined.paths,
            classes,
            extra={"ensemble_of": [row.job for row in folds]},
        )
        report = folder.relative_to(sweep_dir) / f"{REPORT}.md"
        results.append(FoldEnsemble(config, len(folds), group, metrics, report))
    return results
