"""Entry point: audit a data set for copies, Train-Test leaks, label conflicts and image issues, and with
labels_from rank the training images whose given label a k-fold sweep's models doubt."""

import logging
from collections import Counter
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.errors import UserError
from skin_lightning.results.audit_report import (
    audit_markdown,
    cluster_members,
    cluster_montage,
    flat_montage,
    split_labels,
    write_audit_csv,
)
from skin_lightning.results.label_issues import rank_label_issues, read_out_of_fold, write_label_issues

log = logging.getLogger(__name__)


def label_issue_lines(output_dir: Path, sweep: Path, rows: int) -> list[str]:
    found = read_out_of_fold(sweep)
    ranked, quality = rank_label_issues(found)
    write_label_issues(output_dir / "label_issues.csv", found, ranked, quality)
    items = [
        (Path(found.paths[i]), f"{found.classes[found.labels[i]]}>{found.classes[found.probs[i].argmax()]}")
        for i in ranked[: rows * 6]
    ]
    flat_montage(items, output_dir / "label_issues.png")
    by_class = Counter(found.classes[found.labels[i]] for i in ranked)
    given = Counter(found.classes[label] for label in found.labels)
    log.info(
        "label issues: %d of %d training images (label_issues.csv, label_issues.png)", len(ranked), len(found.paths)
    )
    return [
        "",
        f"## Likely label errors ({len(ranked)} of {len(found.paths)} images with out-of-fold predictions)",
        "",
        f"From {found.files} val_predictions.csv files under {sweep}; ranked by cleanlab (find_label_issues, "
        "self-confidence) in label_issues.csv, the first shown in label_issues.png as given>suggested.",
        "",
        "| given class | images | likely errors |",
        "|---|---|---|",
        *(f"| {name} | {given[name]} | {by_class[name]} |" for name in found.classes),
    ]


def audit(cfg: DictConfig) -> dict:
    if OmegaConf.is_missing(cfg.data, "root"):
        raise UserError("data.root is not set: pass data.root=/path/to/data (its Train and Test images are audited)")
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    datamodule = SkinDataModule(cfg.data, None, None, cfg.seed)
    datamodule.prepare_data()
    layout = datamodule.read_layout()
    result = datamodule.audit()
    splits = {"Train": split_labels(layout.train.paths, layout.train.labels, layout.classes)}
    if layout.test is not None:
        splits["Test"] = split_labels(layout.test.paths, layout.test.labels, layout.classes)
    members = cluster_members(result, splits)
    write_audit_csv(output_dir / "audit.csv", members)
    written = "audit.md, audit.csv and copies.png" if members else "audit.md and audit.csv (no copies: no copies.png)"
    if members:  # an empty montage would be a blank image
        cluster_montage(members, output_dir / "copies.png", cfg.montage_rows)
    text = audit_markdown(result, splits, members, layout.classes)
    if not members:
        text += "\nNo copies were found, so there is no copies.png.\n"
    if cfg.labels_from is not None:
        text += "\n".join(label_issue_lines(output_dir, Path(cfg.labels_from), cfg.montage_rows)) + "\n"
    (output_dir / "audit.md").write_text(text)
    log.info("%d clusters of copies; %s in %s", len(members), written, output_dir)
    return {"clusters": len(members), "seconds": result.seconds}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="audit")
def main(cfg: DictConfig) -> None:
    with reported(Path(cfg.output_dir)):
        audit(cfg)


if __name__ == "__main__":
    main()
