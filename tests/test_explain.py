"""The explain command, its layer choice, and sanity checks that its maps mean something.

The sanity checks train a ResNet-18 for a few epochs at the recipe's 84 px on generated images whose
lesion sits in one of the four corners, never in the centre, so a map that only draws a central or
fixed blob fails them.
"""

import logging

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from skin_lightning.data.augment import to_model_input
from skin_lightning.errors import UserError
from skin_lightning.explain import explain, overlay_grid
from skin_lightning.model.cam import choose_layer, class_maps
from skin_lightning.model.networks import torchvision_network

from conftest import FROM_SCRATCH, compose_config

SIZE = 84
CORNERS = ((0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))
# Three lesion colours and a class with no lesion at all. Without that class, one lesion class can be
# learned as "none of the others": its evidence is an absence, and its Grad-CAM map is empty.
LESION_COLOURS = ((0.30, 0.18, 0.12), (0.72, 0.20, 0.25), (0.20, 0.25, 0.55), None)
# A lesion 2.4 cells of the 6x6 grid across (radius 0.17 of the side): a smaller one is below what the map can resolve.
LESION_RADIUS = 0.17
DISTRACTOR = (0.55, 0.55, 0.60)  # a grey blob in another corner of every image, of no class: a map must not go there


def corner_images(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 images (N, 84, 84, 3), labels, and lesion masks (empty for the no-lesion class)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    labels = rng.integers(0, len(LESION_COLOURS), count)
    images = np.empty((count, SIZE, SIZE, 3), np.uint8)
    masks = np.zeros((count, SIZE, SIZE), bool)
    for index, label in enumerate(labels):
        image = np.array([0.86, 0.68, 0.58]) + rng.normal(0, 0.03, 3) + rng.normal(0, 0.04, (SIZE, SIZE, 3))
        lesion_corner, distractor_corner = rng.choice(len(CORNERS), 2, replace=False)
        blobs = (
            (LESION_COLOURS[label], lesion_corner, LESION_RADIUS, True),
            (DISTRACTOR, distractor_corner, 0.12, False),
        )
        for colour, corner, radius, is_lesion in blobs:
            if colour is None:
                continue
            cy, cx = (np.array(CORNERS[corner]) + rng.normal(0, 0.03, 2)) * SIZE
            inside = np.hypot(yy - cy, xx - cx) < radius * SIZE * rng.uniform(0.85, 1.15)
            image[inside] = np.array(colour) + rng.normal(0, 0.05, 3) + rng.normal(0, 0.04, (inside.sum(), 3))
            if is_lesion:
                masks[index] = inside
        images[index] = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return images, labels, masks


@pytest.fixture(scope="module")
def corner_maps():
    """Grad-CAM maps at the default layer of 48 held-out corner images, from a ResNet-18 trained 3 epochs
    on 160 of them and from the same architecture freshly initialised, with labels, masks and predictions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine, a second thread mostly spins
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images, labels, _ = corner_images(160, rng)
    network = torchvision_network("resnet18", len(LESION_COLOURS), **FROM_SCRATCH).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    network.train()
    for _ in range(3):
        for batch in np.split(rng.permutation(len(images)), len(images) // 16):
            loss = nn.functional.cross_entropy(
                network(to_model_input(torch.from_numpy(images[batch]))), torch.from_numpy(labels[batch])
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    # After 30 steps the running batch-norm statistics still lag the weights; recompute them exactly.
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for start in range(0, len(images), 64):
            network(to_model_input(torch.from_numpy(images[start : start + 64])))
    network.eval()
    test_images, test_labels, test_masks = corner_images(48, rng)
    batch = to_model_input(torch.from_numpy(test_images))
    with torch.no_grad():
        predicted = network(batch).argmax(dim=1).numpy()
    layer, grid = choose_layer(network, SIZE)
    # Model randomisation as Adebayo et al. do it, all layers at once: the architecture's own initialisation.
    untrained = torchvision_network("resnet18", len(LESION_COLOURS), **FROM_SCRATCH)
    untrained = untrained.to(memory_format=torch.channels_last).eval()
    maps = {
        "trained": class_maps(network, batch, predicted, layer, "gradcam"),
        "untrained": class_maps(untrained, batch, predicted, layer, "gradcam"),
    }
    torch.set_num_threads(threads)
    return {"layer": layer, "grid": grid, "labels": test_labels, "masks": test_masks, "predicted": predicted, **maps}


def peak_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each map's maximum lies on its lesion; a flat (all-zero) map has no peak and fails."""
    return np.array(
        [heat.max() > 0 and mask[np.unravel_index(heat.argmax(), heat.shape)] for heat, mask in zip(maps, masks)]
    )


def test_default_layer_is_the_deepest_with_a_6x6_grid():
    resnet = torchvision_network("resnet18", 8, **FROM_SCRATCH)
    assert choose_layer(resnet, 84) == ("layer3", (6, 6))
    assert choose_layer(resnet, 48) == ("layer2", (6, 6))
    assert choose_layer(resnet, 224) == ("layer4", (7, 7))
    assert choose_layer(torchvision_network("efficientnet_b0", 8, **FROM_SCRATCH), 84) == ("features.5", (6, 6))


def test_a_named_layer_is_measured_and_a_bad_one_is_refused():
    resnet = torchvision_network("resnet18", 8, **FROM_SCRATCH)
    assert choose_layer(resnet, 84, "layer2") == ("layer2", (11, 11))
    assert choose_layer(resnet, 84, "layer3.1.conv2") == ("layer3.1.conv2", (6, 6))
    with pytest.raises(UserError, match=r"layer=nope is not a layer .* layer3 \(6x6\), layer4 \(3x3\)"):
        choose_layer(resnet, 84, "nope")
    with pytest.raises(UserError, match=r"layer=fc gives no spatial grid"):
        choose_layer(resnet, 84, "fc")


@pytest.mark.slow
def test_gradcam_peaks_inside_an_off_centre_lesion(corner_maps):
    """Measured (one thread, Xeon with AVX-512, seeds as here): the peak is on the lesion for 32 of the 33
    correctly classified lesion images (0.97); the model's accuracy is 0.98. Untrained, the same
    architecture's maps peak on the lesion for 0.12 of them, near chance (a lesion covers about 9% of
    the image). So the issue's 0.8 is a bar a trained model clears with room and an untrained one does
    not approach; 0.4 for the untrained share is three times what was measured.
    """
    assert (corner_maps["layer"], corner_maps["grid"]) == ("layer3", (6, 6))
    labels, masks, predicted = corner_maps["labels"], corner_maps["masks"], corner_maps["predicted"]
    scored = (predicted == labels) & masks.any(axis=(1, 2))
    assert scored.sum() >= 24, f"the model learned too little to test its maps: {scored.sum()} correct lesion images"
    share = peak_inside(corner_maps["trained"][scored], masks[scored]).mean()
    untrained = peak_inside(corner_maps["untrained"][scored], masks[scored]).mean()
    logging.getLogger(__name__).info(
        "localisation share %.2f (untrained %.2f) of %d images", share, untrained, scored.sum()
    )
    assert share >= 0.8, f"Grad-CAM peaked inside the lesion for only {share:.2f} of {scored.sum()} images"
    assert untrained < 0.4


@pytest.mark.slow
def test_gradcam_depends_on_the_weights(corner_maps):
    """Model randomisation (Adebayo et al. 2018): maps of the trained network and of the same network
    re-initialised must differ, so a map that only redraws the image (edges, dark spots) fails.

    Measured: mean Spearman rank correlation 0.33 over the 44 of 48 images where neither map is flat
    (0.30 on an earlier variant of these images with two threads). A map that ignores the weights
    scores 1.0; 0 is out of reach, since an untrained network's map still follows the image's contrast.
    The threshold, 0.5, leaves 0.17 of margin above the measurement and is half-way to 1. At the same
    layer Grad-CAM++ (0.49) and EigenCAM (0.48) barely pass it, and LayerCAM (0.65) and Score-CAM (0.53)
    fail: their maps owe more to the image than Grad-CAM's do (see README).
    """
    trained, untrained = corner_maps["trained"], corner_maps["untrained"]
    both = (trained.max(axis=(1, 2)) > 0) & (untrained.max(axis=(1, 2)) > 0)
    assert both.sum() >= 36, f"only {both.sum()} of 48 images have a map from both networks"
    correlation = np.mean([spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(trained[both], untrained[both])])
    logging.getLogger(__name__).info("randomisation rank correlation %.2f over %d images", correlation, both.sum())
    assert correlation < 0.5, (
        f"Grad-CAM maps barely change when the weights are re-initialised (rank correlation {correlation:.2f})"
    )


@pytest.mark.parametrize(
    "method",
    ["gradcam", *(pytest.param(m, marks=pytest.mark.slow) for m in ("gradcam++", "layercam", "eigencam", "scorecam"))],
)
def test_explain_names_method_layer_and_grid(demo_checkpoint, demo_root, tmp_path, caplog, method):
    images = ",".join(str(next((demo_root / "Test" / cls).iterdir())) for cls in ("MEL", "NV"))
    cfg = compose_config(
        "explain", [f"ckpt_path={demo_checkpoint}", f"images=[{images}]", f"method={method}", f"output_dir={tmp_path}"]
    )
    with caplog.at_level(logging.INFO, logger="skin_lightning"):
        figure = explain(cfg)
    assert figure == tmp_path / f"{method}.png" and figure.stat().st_size > 10_000
    assert f"{method} at layer1, 8x8" in caplog.text  # the demo checkpoint is 32 px: layer2 would be 4x4
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_explain_of_the_worst_takes_a_layer_and_refuses_bad_keys(demo_checkpoint, demo_root, tmp_path, caplog):
    common = [f"ckpt_path={demo_checkpoint}", f"data.root={demo_root}", "count=1", f"output_dir={tmp_path}"]
    with caplog.at_level(logging.INFO, logger="skin_lightning"):
        explain(compose_config("explain", [*common, "layer=layer2"]))
    assert "gradcam at layer2, 4x4" in caplog.text
    with pytest.raises(
        UserError,
        match="method=gradcam3 is invalid: expected one of gradcam, gradcam\\+\\+, layercam, eigencam, scorecam",
    ):
        explain(compose_config("explain", [*common, "method=gradcam3"]))
    with pytest.raises(UserError, match="layer=layer9 is not a layer"):
        explain(compose_config("explain", [*common, "layer=layer9"]))


def test_two_images_make_a_figure_of_two_pairs():
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    figure = overlay_grid(images, images, ["a", "b"], ["c", "d"], "heading", (2, 2))
    assert len(figure.axes) == 4 and figure.get_figwidth() == 8
