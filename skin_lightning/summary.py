"""The comparison table of a multirun: one row per job, written again after every job ends.

Rebuilding from the job folders after each job (instead of once at the end) means the table
exists even when a job fails or the sweep is interrupted, and a failed job shows as failed.
"""

import csv
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from hydra.types import RunMode  # noqa: E402

log = logging.getLogger(__name__)

SCORES = ("accuracy", "balanced_accuracy", "macro_f1")


def job_rows(sweep_dir: Path) -> tuple[list[dict], list[str]]:
    rows, classes = [], []
    job_dirs = sorted(
        (p.parent.parent for p in Path(sweep_dir).glob("*/.hydra/overrides.yaml")),
        key=lambda d: (int(d.name.split("_")[0]) if d.name.split("_")[0].isdigit() else 1 << 30, d.name),
    )
    for job_dir in job_dirs:
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
        row = {"job": job_dir.name, "overrides": overrides}
        metrics_file, error_file = job_dir / "metrics.json", job_dir / "error.txt"
        if metrics_file.exists():
            metrics = json.loads(metrics_file.read_text())
            classes = classes or metrics["classes"]
            row["status"] = "completed"
            row.update({name: metrics[name] for name in SCORES})
            row.update({f"recall/{c}": metrics["per_class"][c]["recall"] for c in metrics["classes"]})
        elif error_file.exists():
            row["status"] = "failed: " + error_file.read_text().strip().splitlines()[-1][:200]
        else:
            row["status"] = "not finished"
        rows.append(row)
    return rows, classes


def write_summary(sweep_dir: Path) -> list[dict]:
    """summary.csv, summary.md and summary.png at the sweep root."""
    sweep_dir = Path(sweep_dir)
    rows, classes = job_rows(sweep_dir)
    common = set.intersection(*(set(row["overrides"]) for row in rows)) if rows else set()
    for row in rows:
        row["differs"] = " ".join(o for o in row["overrides"] if o not in common) or "(none)"
        row["overrides"] = " ".join(row["overrides"])
    columns = ["job", "overrides", "status", *SCORES, *(f"recall/{c}" for c in classes)]
    with open(sweep_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    def cell(value) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value).replace("|", "\\|")

    shown = ["job", "differs", *columns[2:]]
    lines = [
        f"# Sweep summary: {sweep_dir}",
        "",
        "Test-set scores of each job; balanced accuracy is the mean per-class recall.",
        f"Overrides common to all jobs: `{' '.join(sorted(common)) or '(none)'}`; each job's folder is named by its overrides.",
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "---|" * len(shown),
        *("| " + " | ".join(cell(row["job"].split("_")[0] if c == "job" else row.get(c, "")) for c in shown) + " |" for row in rows),
    ]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    _plot(sweep_dir / "summary.png", rows, classes)
    return rows


def _plot(path: Path, rows: list[dict], classes: list[str]) -> None:
    done = [row for row in rows if row["status"] == "completed"]
    names = [f'{row["job"].split("_")[0]}: {row["differs"]}' for row in done]
    figure, (bars, heat) = plt.subplots(1, 2, figsize=(6 + 0.8 * len(classes), 1.5 + 0.5 * max(1, len(done))))
    positions = np.arange(len(done))
    height = 0.8 / len(SCORES)
    for k, score in enumerate(SCORES):
        bars.barh(positions + k * height, [row[score] for row in done], height, label=score)
    bars.set_yticks(positions + height, names, fontsize=8)
    bars.set_xlim(0, 1)
    bars.invert_yaxis()
    bars.legend(fontsize=7, loc="lower right")
    bars.set_title("test scores")
    recalls = np.array([[row[f"recall/{c}"] for c in classes] for row in done]).reshape(len(done), len(classes))
    image = heat.imshow(recalls, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    heat.set_xticks(range(len(classes)), classes, rotation=45)
    heat.set_yticks(positions, [row["job"].split("_")[0] for row in done])
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
        write_summary(sweep_dir)
        log.info("sweep summary: %s", sweep_dir / "summary.md")
