"""Copies of one picture among decoded images: exact, re-encoded, and brightness-, contrast- or colour-shifted.

Two stages, because neither alone is right on dermoscopy:

1. Candidates: imagededup's perceptual hash (64-bit DCT hash of the grey image) and every pair within
   `HASH_DISTANCE` bits. The hash ignores brightness and contrast, so shifted copies stay close, but many
   distinct small lesions inside the dermoscope's black circle hash alike, so a hash match alone is no copy.
2. Verification: the same picture under another exposure or white balance is, channel by channel, an
   affine map of the other (gain and offset). Each candidate pair gets the residual of the best such map
   over the centre of the image, in grey levels of 255 (the larger of both directions), and the
   correlation of the two centres (mean over channels). A copy leaves only re-encoding noise: a small
   residual that still leaves most of the picture explained (`MAX_RESIDUAL`, `MIN_CORRELATION`), or,
   in a high-contrast picture whose re-encoding noise is larger, a slightly larger residual with nearly
   all of it explained (`MAX_RESIDUAL_TEXTURED`, `MIN_CORRELATION_TEXTURED`). That second rule is not used
   where the dermoscope's black circle reaches into the compared centre (dark pixels on its border): the
   circle's edge alone then correlates two different small-field pictures. A different lesion, however
   alike in outline, leaves its own texture; two plain skin patches leave little residual but little
   correlation. Comparing the centre keeps the circle's edge, which every such picture shares, out.

Images are compared at `AUDIT_SIZE` px whatever size they were decoded at, so the thresholds hold at any
`data.image_size`. Nearly uniform images (nothing to compare) are reported as image issues, not copies.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from imagededup.methods import PHash
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

AUDIT_SIZE = 64
HASH_DISTANCE = 12  # candidate pairs: perceptual hashes at most this many of 64 bits apart
# copies: affine-fit residual in grey levels of 255 and centre correlation (see the module docstring)
MAX_RESIDUAL, MIN_CORRELATION = 5.0, 0.7
MAX_RESIDUAL_TEXTURED, MIN_CORRELATION_TEXTURED = 7.0, 0.97
CENTRE = slice(AUDIT_SIZE // 6, AUDIT_SIZE - AUDIT_SIZE // 6)
# image issues, on the 0-255 grey image at AUDIT_SIZE
UNIFORM_STD = 3.0
DARK_MEAN = 30.0
DARK_PIXEL = 40.0  # a grey level below this on the centre's border is the dermoscope's circle
BRIGHT_MEAN = 235.0


@dataclass(frozen=True)
class Copies:
    """Pairs judged to be one picture (row indices, i < j), their hash distance and residual, and the clusters.

    `cluster[i]` is the cluster id of row i (0, 1, ...; clusters numbered by their first row), or -1 for a
    row with no copy. `residual[i]` is row i's smallest residual to another member of its cluster.
    """

    pairs: np.ndarray
    hash_distance: np.ndarray
    pair_residual: np.ndarray
    cluster: np.ndarray
    residual: np.ndarray


def audit_pixels(images: np.ndarray, batch: int = 2048) -> np.ndarray:
    """float32 (n, AUDIT_SIZE, AUDIT_SIZE, 3) copies of uint8 NHWC images, antialiased, in batches."""
    out = np.empty((len(images), AUDIT_SIZE, AUDIT_SIZE, 3), dtype=np.float32)
    for start in range(0, len(images), batch):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch])).permute(0, 3, 1, 2).float()
        if chunk.shape[-1] != AUDIT_SIZE:
            chunk = F.interpolate(chunk, size=(AUDIT_SIZE, AUDIT_SIZE), mode="bilinear", antialias=True)
        out[start : start + batch] = chunk.permute(0, 2, 3, 1).numpy()
    return out


def perceptual_hashes(pixels: np.ndarray) -> np.ndarray:
    """imagededup's 64-bit perceptual hash of each image, as uint64."""
    hasher = PHash(verbose=False)
    codes = [
        hasher.encode_image(image_array=np.clip(image, 0, 255).astype(np.uint8))
        for image in tqdm(pixels, desc="hashing", unit="img", mininterval=2.0)
    ]
    return np.array([int(code, 16) for code in codes], dtype=np.uint64)


def hash_candidates(hashes: np.ndarray, max_distance: int = HASH_DISTANCE, block: int = 2048):
    """Every pair (i < j) whose hashes differ in at most `max_distance` bits, with that distance."""
    first, second, distance = [], [], []
    for start in range(0, len(hashes), block):
        bits = np.bitwise_count(hashes[start : start + block, None] ^ hashes[None, :])
        rows, cols = np.nonzero(bits <= max_distance)
        keep = cols > rows + start
        first.append(rows[keep] + start)
        second.append(cols[keep])
        distance.append(bits[rows[keep], cols[keep]])
    if not first:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.stack([np.concatenate(first), np.concatenate(second)], axis=1), np.concatenate(distance).astype(np.int64)


def centre_statistics(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's lightly blurred centre, per channel, minus its mean, and the per-channel standard deviation."""
    centre = gaussian_filter(pixels, sigma=(0, 1, 1, 0))[:, CENTRE, CENTRE]
    flat = centre.transpose(0, 3, 1, 2).reshape(len(centre), 3, -1)
    flat = flat - flat.mean(axis=2, keepdims=True)
    return flat, np.sqrt((flat**2).mean(axis=2))


def affine_residuals(
    centred: np.ndarray, spread: np.ndarray, pairs: np.ndarray, block: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Grey levels left after the best per-channel gain and offset maps one image of a pair onto the other,
    and the pair's correlation (mean over channels).

    For a least-squares line of b on a the residual deviation is sd_b * sqrt(1 - r^2); the larger of both
    directions is kept, so the score is symmetric.
    """
    out = np.empty(len(pairs), dtype=np.float32)
    correlation = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), block):
        a, b = pairs[start : start + block, 0], pairs[start : start + block, 1]
        r = (centred[a] * centred[b]).mean(axis=2) / np.maximum(spread[a] * spread[b], 1e-6)
        correlation[start : start + block] = r.mean(axis=1)
        unexplained = np.sqrt(np.clip(1 - r**2, 0, None))
        out[start : start + block] = np.maximum(
            np.sqrt(((spread[a] * unexplained) ** 2).mean(axis=1)),
            np.sqrt(((spread[b] * unexplained) ** 2).mean(axis=1)),
        )
    return out, correlation


def circle_in_centre(pixels: np.ndarray, width: int = 3) -> np.ndarray:
    """Whether dark pixels (the dermoscope's circle) lie on the border of an image's compared centre."""
    grey = pixels[:, CENTRE, CENTRE] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    border = np.ones(grey.shape[1:], dtype=bool)
    border[width:-width, width:-width] = False
    return (grey[:, border] < DARK_PIXEL).any(axis=1)


def is_copy(residual: np.ndarray, correlation: np.ndarray, circle: np.ndarray) -> np.ndarray:
    """`circle`: per pair, whether either image's centre reaches the dermoscope's circle."""
    plain = (residual <= MAX_RESIDUAL) & (correlation >= MIN_CORRELATION)
    textured = (residual <= MAX_RESIDUAL_TEXTURED) & (correlation >= MIN_CORRELATION_TEXTURED) & ~circle
    return plain | textured


def connected_clusters(count: int, pairs: np.ndarray) -> np.ndarray:
    """Cluster id of every row (-1: in no pair), clusters numbered in order of their first row."""
    parent = np.arange(count)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = root(int(i)), root(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([root(i) for i in range(count)])
    paired = np.zeros(count, dtype=bool)
    paired[pairs.ravel()] = True
    cluster = np.full(count, -1, dtype=np.int64)
    numbers: dict[int, int] = {}
    for i in np.flatnonzero(paired):
        cluster[i] = numbers.setdefault(int(roots[i]), len(numbers))
    return cluster


def image_issues(pixels: np.ndarray) -> list[str]:
    """One entry per image: "" or the issues found ("uniform", "dark", "bright"), comma-separated."""
    grey = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mean, std = grey.mean(axis=(1, 2)), grey.std(axis=(1, 2))
    issues = []
    for m, s in zip(mean, std):
        found = [
            name
            for name, hit in (("uniform", s < UNIFORM_STD), ("dark", m < DARK_MEAN), ("bright", m > BRIGHT_MEAN))
            if hit
        ]
        issues.append(",".join(found))
    return issues


def find_copies(pixels: np.ndarray, hashes: np.ndarray, max_distance: int = HASH_DISTANCE) -> Copies:
    """Copies among `pixels` (from `audit_pixels`), judged as the module docstring says."""
    centred, spread = centre_statistics(pixels)
    candidates, distance = hash_candidates(hashes, max_distance)
    structured = spread.mean(axis=1) >= UNIFORM_STD
    keep = structured[candidates[:, 0]] & structured[candidates[:, 1]] if len(candidates) else np.empty(0, bool)
    candidates, distance = candidates[keep], distance[keep]
    residual, correlation = affine_residuals(centred, spread, candidates)
    circle = circle_in_centre(pixels)
    copy = is_copy(residual, correlation, circle[candidates[:, 0]] | circle[candidates[:, 1]])
    pairs, distance, residual = candidates[copy], distance[copy], residual[copy]
    cluster = connected_clusters(len(pixels), pairs)
    nearest = np.full(len(pixels), np.nan, dtype=np.float32)
    for (i, j), value in zip(pairs, residual):
        nearest[i] = np.fmin(nearest[i], value)
        nearest[j] = np.fmin(nearest[j], value)
    return Copies(pairs, distance, residual, cluster, nearest)
