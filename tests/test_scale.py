"""More than one process: DDP on two CPU processes, a local submitit multirun, an Optuna search."""

import csv
import json

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from skin_lightning.cli import CONFIG_DIR

from conftest import FAST, compose_train, run_train

TINY = [
    *FAST,
    "experiment=demo",
    "data.image_size=16",
    "data.batch_size=4",
    "logger=csv",
]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_splits_the_data_and_reduces_metrics(demo_root, tmp_path):
    """Two ranks, two epochs: LDAM with its re-weighting and the oversampling both deferred to the second."""
    run_dir = tmp_path / "run"
    result = run_train(
        [
            *TINY,
            f"data.root={demo_root}",
            "trainer=ddp_cpu",
            "trainer.max_epochs=2",
            "loss=ldam",
            "loss.defer_epochs=1",
            "sampler.defer_epochs=1",
            f"hydra.run.dir={run_dir}",
            "+callbacks.record._target_=probes.RecordRank",
            f"+callbacks.record.folder={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stdout + result.stderr
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [record["world_size"] for record in ranks] == [2, 2]
    first, second = (record["indices"] for record in ranks)
    assert [len(epoch) for epoch in first] == [len(epoch) for epoch in second] == [8, 8]  # 2 batches of 4 an epoch
    assert not set(first[0]) & set(second[0])  # the shuffled epoch: each rank its own share of one permutation
    assert first[1] != second[1]  # the oversampled epoch: each rank its own share of the draws
    # the loss's class statistics come from the whole training split on both ranks, not from a rank's share
    with open(run_dir / "split.csv") as handle:
        train_labels = [row["label"] for row in csv.DictReader(handle) if row["split"] == "train"]
    counts = [train_labels.count(name) for name in sorted(set(train_labels))]
    beta = 0.9999
    class_balanced = [(1 - beta) / (1 - beta**n) for n in counts]
    margins = [0.5 * (min(counts) / n) ** 0.25 for n in counts]
    for record in ranks:
        assert record["loss_weights"][0] == [1.0] * len(counts)  # plain loss before the deferred epoch
        assert record["loss_weights"][1] == pytest.approx(class_balanced, rel=1e-6)
        assert record["margins"] == pytest.approx(margins, rel=1e-6)
    # torchmetrics synchronized its states: both ranks hold the same validation scores
    for name in ("val/balanced_accuracy", "val/loss"):
        assert ranks[0]["metrics"][name] == ranks[1]["metrics"][name], name
    # the tested checkpoint is evaluated once, by the first process: every test image once
    with open(run_dir / "test_predictions.csv") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    assert len(paths) == len(set(paths)) == 200
    assert json.loads((run_dir / "metrics.json").read_text())["num_images"] == 200


@pytest.mark.slow
def test_optuna_search_of_two_trials_runs_as_local_submitit_jobs(demo_root, tmp_path):
    """One multirun checks both engines: the Optuna sweeper proposes, the submitit launcher runs."""
    result = run_train(
        [
            *TINY,
            f"data.root={demo_root}",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "hydra/launcher=submitit_local",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    job_dirs = sorted(path.parent for path in tmp_path.glob("*/metrics.json"))
    assert [job.name.split("_")[0] for job in job_dirs] == ["0", "1"]
    assert len(list((tmp_path / ".submitit").glob("*/*_result.pkl"))) == 2  # both ran as submitit jobs
    trials = [json.loads((job / "metrics.json").read_text()) for job in job_dirs]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(trial["validation"]["balanced_accuracy"] for trial in trials)
    assert set(best["best_params"]) == {"optim.lr", "optim.weight_decay", "sampler", "loss.label_smoothing"}
    with open(tmp_path / "summary.csv") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["completed", "completed"]


def test_the_slurm_launcher_gets_the_users_partition_and_keeps_its_files_in_the_sweep():
    """The launcher Hydra builds from hydra/launcher=slurm (not its YAML values, which are a cluster's choice)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.sweep.dir=/sweeps/one"],
            return_hydra_config=True,
        )
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    assert launcher.params["partition"] == "gpu"
    assert launcher.params["submitit_folder"].startswith("/sweeps/one/")


def test_ddp_trainer_configs_compose():
    assert compose_train(["trainer=ddp"]).trainer.strategy == "ddp"
    cpu = compose_train(["trainer=ddp_cpu"]).trainer
    assert (cpu.accelerator, cpu.devices, cpu.strategy) == ("cpu", 2, "ddp")
