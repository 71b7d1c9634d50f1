"""Reading and writing checkpoints: nothing but tensors and plain containers is ever unpickled,
and a crash while writing never leaves a half-written file where a good one was.

Every path that reads a checkpoint goes through `read_checkpoint` (resuming a run here; evaluate,
predict, explain and export through inference.load_checkpoint), so a file from an untrusted source
cannot run code on the user's machine.
"""

import logging
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from skin_lightning.errors import UserError
from skin_lightning.model.networks import network_name

log = logging.getLogger(__name__)

LAST = "last.ckpt"


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A Lightning checkpoint read with torch.load(weights_only=True); UserError if it is missing,
    unreadable, or carries pickled objects that could run code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: pass a training run's checkpoints/best.ckpt or last.ckpt")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), "").rstrip(".")
        raise UserError(
            f"refused to load {path}: it holds pickled Python objects beyond tensors and plain containers, "
            f"which could run code while loading{f' ({reason})' if reason else ''}. Only load checkpoints "
            "written by skin_lightning.train, or ask their author for one saved with plain hyperparameters"
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise UserError(
            f"{path} is not a readable PyTorch checkpoint (truncated or another format): {error}"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a Lightning checkpoint: it has no state_dict")
    return checkpoint


def checkpoint_epoch(path: str | Path) -> int:
    """The epoch a checkpoint was written in, counted from 1, read without loading its tensors (mmap)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1


def check_checkpoint_fits(checkpoint: dict, own: dict, hparams: dict, path: str | None) -> None:
    """Checks that a checkpoint being resumed or tested fits this run's network, before Lightning's strict load
    fails with a bare list of keys. Checkpoints written before the long-tail losses keep weighted_ce's class
    weights as a tensor; the loss computes the same weights from the training split, so those are dropped."""
    state = checkpoint["state_dict"]
    state.pop("class_weights", None)
    differ = sorted(set(own) ^ set(state)) + sorted(
        key for key in own.keys() & state.keys() if own[key].shape != state[key].shape
    )
    if differ:
        written = checkpoint.get("hyper_parameters", {})
        raise UserError(
            f"{path} does not fit this run's network ({len(differ)} tensors differ, first "
            f"{differ[0]}): it holds a {network_name(written.get('model', {})) if written.get('model') else 'network'} "
            f"for {len(written.get('classes', [])) or 'unknown'} classes, this run builds a "
            f"{network_name(hparams['model'])} for {len(hparams['classes'])}; resume with the model and data it was "
            "trained with"
        )


def resume_path(resume: str | None, checkpoint_dir: Path) -> str | None:
    """`resume` is null (start fresh), auto (this run directory's last.ckpt when it exists) or a file."""
    if resume in (None, "none"):
        return None
    if resume == "auto":
        last = Path(checkpoint_dir) / LAST
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        log.info("resume=auto: no %s yet, starting from scratch", last)
        return None
    if not Path(resume).is_file():
        raise UserError(
            f"resume={resume}: no such checkpoint; use resume=auto with hydra.run.dir=<the run directory> "
            "or the path of a .ckpt file"
        )
    return str(resume)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it and renames it into place once on disk,
    and reads checkpoints through `read_checkpoint`, so resuming is as safe as evaluating."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException as error:
            written = Path(temporary).stat().st_size if Path(temporary).exists() else 0
            Path(temporary).unlink(missing_ok=True)
            if isinstance(error, (OSError, RuntimeError)):
                # a full disk reaches us as torch's "unexpected pos" RuntimeError as often as an OSError
                raise UserError(
                    f"could not write checkpoint {path}: {error}. {shutil.disk_usage(path.parent).free / 2**20:,.0f} "
                    f"MiB are free on its disk, and this checkpoint had reached {written / 2**20:,.0f} MiB; "
                    f"{'the previous ' + path.name + ' is kept' if path.exists() else 'no earlier one was there'}"
                ) from error
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def load_checkpoint(self, path: str | Path, map_location=None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location)
