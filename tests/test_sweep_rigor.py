import csv
import json

import pytest

from conftest import FAST, run_train


@pytest.mark.slow
def test_two_seeds_of_two_configurations_give_a_grouped_summary_with_comparisons(demo_root, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [
        "-m",
        "experiment=demo",
        f"data.root={demo_root}",
        "loss=ce,weighted_ce",
        "seed=1,2",
        *FAST,
        "augment=none",
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_train(overrides, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert len(jobs) == 4
    first = json.loads((jobs[0] / "metrics.json").read_text())
    assert set(first["intervals"]) >= {"accuracy", "balanced_accuracy", "macro_f1"}
    assert first["validation"]["fold"] is None and 0 <= first["validation"]["balanced_accuracy"] <= 1

    markdown = (sweep / "summary.md").read_text()
    assert "Reference: **loss=ce**" in markdown
    assert (
        "| **loss=ce** | mean ± sd of 2 runs |" in markdown
        and "| **loss=weighted_ce** | mean ± sd of 2 runs |" in markdown
    )
    assert markdown.count("| ↳ seed=1 |") == 2 and markdown.count("| ↳ seed=2 |") == 2
    assert "[95% CI]" in markdown and "Holm" in markdown
    with open(sweep / "summary.csv") as handle:
        rows = {row["job"]: row for row in csv.DictReader(handle)}
    compared = [row for row in rows.values() if row["diff"]]
    assert len(compared) == 2 and all(row["reference"].startswith(("0_", "1_")) for row in compared)
    for row in compared:
        # the significance mark follows the Holm-adjusted p-value
        line = next(line for line in markdown.splitlines() if f"| {row['job'].split('_')[0]} | completed |" in line)
        assert (" *" in line) == (float(row["holm_p"]) < 0.05), line
        assert f"{float(row['diff']):+.4f} [{float(row['diff_low']):+.4f}, {float(row['diff_high']):+.4f}]" in line
        assert f"{float(row['mcnemar_p']):.4f} ({float(row['holm_p']):.4f})" in line
    assert (sweep / "summary.png").stat().st_size > 10_000
