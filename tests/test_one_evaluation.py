"""One evaluation of the tested checkpoint: every place that shows a test or validation score shows the same number,
with and without test-time augmentation and logit adjustment."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.utils.tensorboard._utils import figure_to_image

from skin_lightning.model.confusion import confusion_figure

from conftest import FAST, run_train

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "auroc")


@pytest.mark.slow  # a sweep of four training jobs
def test_tensorboard_hparams_reports_and_summary_agree(demo_root, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = ["-m", "experiment=demo", *FAST, f"data.root={demo_root}", f"hydra.sweep.dir={sweep}"]
    result = run_train([*overrides, "tta=none,dihedral", "logit_adjustment=null,auto"], cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(sweep / "summary.csv") as handle:
        rows = {row["job"]: row for row in csv.DictReader(handle)}
    assert sorted(row["configuration"] for row in rows.values()) == [
        "tta=dihedral logit_adjustment=auto", "tta=dihedral logit_adjustment=null",
        "tta=none logit_adjustment=auto", "tta=none logit_adjustment=null",
    ]
    for job, row in rows.items():
        check_job(sweep / job, row)


def check_job(run, row: dict) -> None:
    job = row["configuration"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"tta={metrics['tta']}" in job
    assert ("logit_adjustment" in metrics) == ("logit_adjustment=auto" in job)
    # summary.csv: the numbers of metrics.json, as they are
    for name in ("balanced_accuracy", "accuracy", "macro_f1"):
        assert float(row[name]) == metrics[name], (job, name)
    assert float(row["val_balanced_accuracy"]) == metrics["validation"]["balanced_accuracy"]
    # report.md: the same numbers, to its four digits
    report = (run / "report.md").read_text()
    assert f"in the test labels): {metrics['balanced_accuracy']:.4f} [" in report
    assert f"Accuracy: {metrics['accuracy']:.4f} [" in report
    # TensorBoard: one point each, the tested checkpoint's, float32 of the same number
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    for name in HEADLINE:
        (test,) = events.Scalars(f"test/{name}")
        (val,) = events.Scalars(f"val_tested/{name}")
        assert test.value == np.float32(metrics[name]), (job, name)
        assert val.value == np.float32(metrics["validation"][name]), (job, name)
    # HParams: its test and validation columns are those scalars (the tab shows a metric's latest value)
    hparams = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    columns = [metric.name.tag for metric in experiment.metric_infos]
    assert columns[:2] == ["test/balanced_accuracy", "val_tested/balanced_accuracy"]
    # the swept settings are ticked, and name the trial
    assert {info.name for info in experiment.hparam_infos if info.differs} >= {"tta", "logit_adjustment"}
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.group_name == job
    # the test confusion figure: drawn from metrics.json's matrix
    (image,) = events.Images("test/confusion_matrix")
    drawn = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    title = "test, best checkpoint (epoch 1)"
    expected = figure_to_image(confusion_figure(np.array(metrics["confusion_matrix"]), metrics["classes"], title))
    assert np.array_equal(drawn, expected.transpose(1, 2, 0)[..., :3]), job
