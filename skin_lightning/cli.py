"""What every entry point shares: where the configs are, and how a user's mistake is reported."""

import logging
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from skin_lightning.errors import UserError
from skin_lightning.results.sweep import run_name

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")
OmegaConf.register_new_resolver("run_name", run_name, replace=True)

log = logging.getLogger("skin_lightning")


@contextmanager
def reported(output_dir: Path):
    """A UserError ends a single run with its message alone and exit status 1.

    Any failure also leaves error.txt in the run directory, so a sweep summary can show the
    job as failed; in a multirun the error is re-raised so Hydra marks the job failed and
    goes on with the others.
    """
    try:
        yield
    except Exception as error:
        output_dir.mkdir(parents=True, exist_ok=True)
        detail = str(error) if isinstance(error, UserError) else traceback.format_exc()
        (output_dir / "error.txt").write_text(
            f"{detail}\n{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}\n"
        )
        if isinstance(error, UserError) and HydraConfig.get().mode == RunMode.RUN:
            log.error("%s", error)
            sys.exit(1)
        raise
