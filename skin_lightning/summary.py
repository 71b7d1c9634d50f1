"""Entry point: a multirun's summary, rewritten after every job (Hydra callback) or rebuilt on demand."""

import argparse
import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import OmegaConf

from skin_lightning.errors import UserError
from skin_lightning.model.tensorboard import mark_killed_runs
from skin_lightning.results.sweep import job_rows, reference_configuration
from skin_lightning.results.sweep_summary import write_summary

log = logging.getLogger(__name__)


class SweepSummary(Callback):
    """Hydra callback: after each job of a multirun, rewrite the sweep's summary."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        write_summary(sweep_dir, OmegaConf.select(config, "summary.reference"))
        log.info("sweep summary: %s", sweep_dir / "summary.md")


def main(argv: list[str] | None = None) -> None:
    """Rebuild a sweep's summary, for instance against another reference, without rerunning it."""
    parser = argparse.ArgumentParser(prog="skin-summary", description=main.__doc__)
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder, e.g. outputs/multirun/2025-01-01_12-00-00")
    parser.add_argument("--reference", help="configuration to compare with (default: the first job's)")
    args = parser.parse_args(argv)
    try:
        mark_killed_runs(args.sweep_dir)
        rows = job_rows(args.sweep_dir)[0]
        if not rows:
            raise UserError(f"{args.sweep_dir} holds no sweep jobs (no */.hydra/overrides.yaml)")
        reference_configuration(rows, args.reference)
    except UserError as error:
        sys.exit(f"error: {error}")
    write_summary(args.sweep_dir, args.reference)
    print(args.sweep_dir / "summary.md")


if __name__ == "__main__":
    main()
