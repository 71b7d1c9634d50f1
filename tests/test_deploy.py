"""Predict and export on a checkpoint trained in-test (FAST, demo data); explain has tests/test_explain.py."""

import json
import shutil

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import torch

from skin_lightning.errors import UserError
from skin_lightning.export import export_model
from skin_lightning.model.inference import load_checkpoint, predict_probs
from skin_lightning.predict import predict

from conftest import compose_config


def test_predict_lists_a_broken_image_and_predicts_the_others(demo_checkpoint, demo_root, tmp_path):
    images = tmp_path / "images"
    (images / "nested").mkdir(parents=True)
    good = [next((demo_root / "Test" / cls).iterdir()) for cls in ("AK", "NV", "MEL")]
    shutil.copy(good[0], images)
    shutil.copy(good[1], images / "nested")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    (images / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "out"
    cfg = compose_config(
        "predict", [f"ckpt_path={demo_checkpoint}", f"input=[{images},{good[2]}]", "isic_csv=true", f"output_dir={out}"]
    )
    table = pd.read_csv(predict(cfg), keep_default_na=False)
    assert [p.split("/")[-1] for p in table.path] == ["broken.jpg", good[0].name, good[1].name, good[2].name]
    broken = table.iloc[0]
    assert broken.predicted == "" and "cannot identify image file" in broken.error
    probs = (
        table.iloc[1:][[f"prob_{c}" for c in ("AK", "BCC", "BKL", "DF", "MEL", "NV", "SCC", "VASC")]]
        .astype(float)
        .to_numpy()
    )
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    model = load_checkpoint(demo_checkpoint)
    assert list(table.iloc[1:].predicted) == [model.classes[k] for k in probs.argmax(axis=1)]
    submission = pd.read_csv(out / "isic_submission.csv")
    assert list(submission.columns) == ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    assert list(submission.image) == [path.stem for path in good]
    assert (submission.UNK == 0).all() and np.allclose(submission.MEL, table.iloc[1:].prob_MEL.astype(float), atol=1e-6)


def test_predict_reports_a_missing_input(demo_checkpoint, tmp_path):
    cfg = compose_config(
        "predict", [f"ckpt_path={demo_checkpoint}", f"input={tmp_path / 'nowhere'}", f"output_dir={tmp_path}"]
    )
    with pytest.raises(UserError, match="nowhere does not exist"):
        predict(cfg)


def test_a_bad_checkpoint_is_reported(tmp_path):
    fake = tmp_path / "fake.ckpt"
    torch.save({"state_dict": {}}, fake)
    with pytest.raises(UserError, match="fake.ckpt is not a skin_lightning training checkpoint"):
        load_checkpoint(fake)


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("torchscript", marks=pytest.mark.slow)])
@pytest.mark.parametrize("trained", ["demo_checkpoint", pytest.param("timm_checkpoint", marks=pytest.mark.slow)])
def test_export_matches_pytorch(trained, tmp_path, fmt, request):
    model = load_checkpoint(request.getfixturevalue(trained))
    path = export_model(model, fmt, tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (5, model.image_size, model.image_size, 3), dtype=np.uint8)
    expected = predict_probs(model, images)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        exported = session.run(None, {"images": images})[0]
        metadata = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    else:
        files = {"metadata.json": ""}
        scripted = torch.jit.load(str(path), _extra_files=files)
        with torch.no_grad():
            exported = scripted(torch.from_numpy(images)).numpy()
        metadata = json.loads(files["metadata.json"])
    assert np.abs(exported - expected).max() < 1e-4
    assert json.loads(metadata["classes"]) == model.classes and metadata["image_size"] == str(model.image_size)
