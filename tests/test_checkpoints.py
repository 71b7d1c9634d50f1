"""Checkpoints load with weights_only=True: a file carrying code is refused before the code runs."""

import os

import pytest
import torch

from skin_lightning.errors import UserError
from skin_lightning.model.checkpoints import AtomicCheckpointIO, read_checkpoint, resume_path
from skin_lightning.model.inference import load_checkpoint


class RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint would carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_carrying_code_is_refused_and_the_code_never_runs(tmp_path):
    marker, path = tmp_path / "code_ran", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"classes": ["MEL"]}, "extra": RunsCode(marker)}, path)
    for load in (
        read_checkpoint,
        load_checkpoint,
        AtomicCheckpointIO().load_checkpoint,
    ):  # train's resume, evaluate/predict/explain/export
        with pytest.raises(UserError) as caught:
            load(path)
        message = str(caught.value)
        assert message.startswith(f"refused to load {path}: it holds pickled Python objects")
        assert "system" in message  # torch names the global it refused
        assert not marker.exists()
    torch.load(path, weights_only=False)  # the file is live: an unsafe load does run it
    assert marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [(b"PK\x03\x04 half a zip", "is not a readable PyTorch checkpoint"), (None, "does not exist")],
)
def test_unreadable_or_missing_checkpoint_is_named(tmp_path, content, message):
    path = tmp_path / "model.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_checkpoint(path)


def test_weights_alone_are_not_a_lightning_checkpoint(tmp_path):
    torch.save({"conv.weight": torch.ones(2)}, tmp_path / "weights.pth")
    with pytest.raises(UserError, match="is not a Lightning checkpoint: it has no state_dict"):
        read_checkpoint(tmp_path / "weights.pth")


def test_resume_choices(tmp_path):
    assert resume_path(None, tmp_path) is None
    assert resume_path("auto", tmp_path) is None  # nothing to continue yet: start fresh
    (tmp_path / "last.ckpt").touch()
    assert resume_path("auto", tmp_path) == str(tmp_path / "last.ckpt")
    assert resume_path(str(tmp_path / "last.ckpt"), tmp_path / "elsewhere") == str(tmp_path / "last.ckpt")
    with pytest.raises(UserError, match="resume=nowhere.ckpt: no such checkpoint; use resume=auto with hydra.run.dir"):
        resume_path("nowhere.ckpt", tmp_path)
