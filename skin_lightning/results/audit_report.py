"""What the audit writes: audit.md (counts per class and split), audit.csv (every image in a cluster) and
montages that put the clusters a person should confirm first (label conflicts, then Train-Test copies)."""

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from skin_lightning.data import copies
from skin_lightning.data.audit import Audit
from skin_lightning.data.images import BadImageError, decode_image

THUMB = 84


@dataclass(frozen=True)
class Member:
    path: Path
    split: str
    label: str
    residual: float


def cluster_members(audit: Audit, splits: dict[str, tuple[list[Path], list[str]]]) -> dict[int, list[Member]]:
    """The members of every cluster, with the split ("Train", "Test") and label each image has in the layout."""
    cluster, residual = {}, {}
    for path, c, r in zip(audit.paths, audit.cluster, audit.residual):
        if c >= 0:
            cluster[path], residual[path] = int(c), float(r)
    members: dict[int, list[Member]] = {}
    for split, (paths, labels) in splits.items():
        for path, label in zip(paths, labels):
            if path in cluster:
                members.setdefault(cluster[path], []).append(Member(path, split, label, residual[path]))
    return members


def kind(members: list[Member]) -> str:
    found = sorted({m.split for m in members}, reverse=True)
    return "+".join(found)


def is_conflict(members: list[Member]) -> bool:
    return len({m.label for m in members}) > 1


def review_order(members: dict[int, list[Member]]) -> list[int]:
    """Label conflicts first, then clusters spanning splits, then the rest; larger clusters first within each."""
    return sorted(
        members,
        key=lambda c: (not is_conflict(members[c]), len({m.split for m in members[c]}) == 1, -len(members[c]), c),
    )


def write_audit_csv(path: Path, members: dict[int, list[Member]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["cluster", "cluster_splits", "label_conflict", "split", "label", "path", "residual_to_nearest_copy"]
        )
        for c in review_order(members):
            for m in members[c]:
                writer.writerow(
                    [c, kind(members[c]), is_conflict(members[c]), m.split, m.label, m.path, f"{m.residual:.2f}"]
                )


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(map(str, r)) + " |" for r in rows),
    ]


def audit_markdown(
    audit: Audit, splits: dict[str, tuple[list[Path], list[str]]], members: dict[int, list[Member]], classes: list[str]
) -> str:
    issues = dict(zip(audit.paths, audit.issues))
    rows = []
    for split, (paths, labels) in splits.items():
        counts = Counter(labels)
        in_clusters, clusters, conflicts, crossing, flagged = Counter(), {}, {}, Counter(), Counter()
        for c, group in members.items():
            for m in group:
                if m.split != split:
                    continue
                in_clusters[m.label] += 1
                clusters.setdefault(m.label, set()).add(c)
                if is_conflict(group):
                    conflicts.setdefault(m.label, set()).add(c)
                if any(other.split != split for other in group):
                    crossing[m.label] += 1
        for path, label in zip(paths, labels):
            if issues[path]:
                flagged[label] += 1
        for name in [*classes, "all"]:
            pick = (lambda counter: sum(counter.values())) if name == "all" else (lambda counter: counter[name])
            sets = (
                (lambda d: len(set().union(*d.values())) if d else 0)
                if name == "all"
                else (lambda d: len(d.get(name, ())))
            )
            rows.append(
                [
                    split,
                    name,
                    pick(counts),
                    pick(in_clusters),
                    sets(clusters),
                    sets(conflicts),
                    pick(crossing),
                    pick(flagged),
                ]
            )
    kinds = Counter(kind(group) for group in members.values())
    issue_counts = Counter(issue for found in audit.issues for issue in found.split(",") if issue)
    lines = [
        f"# Data audit ({len(audit.paths)} images, {len(members)} clusters of copies)",
        "",
        f"Audit time: {audit.seconds:.1f} s (0 when read from the cache).",
        f"Clusters by the splits they span: {', '.join(f'{k}: {v}' for k, v in sorted(kinds.items())) or 'none'}; "
        f"with conflicting labels: {sum(is_conflict(g) for g in members.values())}.",
        "",
        "Per split and class: images; images in a cluster of copies; clusters with an image of that class; of those, "
        "clusters whose copies carry more than one label; images with a copy in another split; images with an image "
        "issue (nearly uniform, very dark or very bright).",
        "",
        *_table(
            [
                "split",
                "class",
                "images",
                "in clusters",
                "clusters",
                "label conflicts",
                "copy in other split",
                "image issues",
            ],
            rows,
        ),
        "",
        f"Image issues: {', '.join(f'{k} {v}' for k, v in sorted(issue_counts.items())) or 'none'}.",
        "",
        f"Method: perceptual hash (imagededup PHash) within {copies.HASH_DISTANCE} bits, then the residual of the best "
        "per-channel gain and offset between the two image centres at "
        f"{copies.AUDIT_SIZE} px: at most {copies.MAX_RESIDUAL} grey levels with correlation at least "
        f"{copies.MIN_CORRELATION}, or at most {copies.MAX_RESIDUAL_TEXTURED} with correlation at least "
        f"{copies.MIN_CORRELATION_TEXTURED}. audit.csv lists every image in a cluster; copies.png shows the clusters, "
        "label conflicts and Train-Test copies first, for a person to confirm.",
    ]
    return "\n".join(lines) + "\n"


def _thumbnail(path: Path) -> Image.Image:
    try:
        return Image.fromarray(decode_image(path, THUMB))
    except BadImageError:
        return Image.new("RGB", (THUMB, THUMB), "grey")


def montage(rows: list[tuple[str, list[tuple[Path, str]]]], path: Path, per_row: int = 6) -> None:
    """One row per entry: its title above, then up to `per_row` images with their captions."""
    line = 12
    height = THUMB + 2 * line + 6
    sheet = Image.new("RGB", (per_row * (THUMB + 4) + 4, max(1, len(rows)) * height), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (title, images) in enumerate(rows):
        top = r * height
        draw.text((4, top), title, fill="black")
        for k, (image, caption) in enumerate(images[:per_row]):
            left = 4 + k * (THUMB + 4)
            sheet.paste(_thumbnail(image), (left, top + line))
            draw.text((left, top + line + THUMB), caption[:14], fill="black")
    sheet.save(path)


def cluster_montage(members: dict[int, list[Member]], path: Path, limit: int) -> None:
    rows = []
    for c in review_order(members)[:limit]:
        group = members[c]
        title = f"cluster {c}" + (" LABEL CONFLICT" if is_conflict(group) else "") + f" ({kind(group)})"
        rows.append((title, [(m.path, f"{m.split} {m.label}") for m in group]))
    montage(rows, path)


def flat_montage(items: list[tuple[Path, str]], path: Path, per_row: int = 6) -> None:
    """Images in reading order, `per_row` a row (ranked lists such as likely label errors)."""
    rows = [
        (f"{start + 1}-{start + len(items[start : start + per_row])}", items[start : start + per_row])
        for start in range(0, len(items), per_row)
    ]
    montage(rows, path, per_row)


def split_labels(paths: list[Path], labels: list[int], classes: list[str]) -> tuple[list[Path], list[str]]:
    return list(paths), [classes[int(label)] for label in np.asarray(labels)]
