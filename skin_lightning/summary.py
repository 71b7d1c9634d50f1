"""Entry point: rebuild a sweep's summary (`python -m skin_lightning.summary SWEEP_DIR`)."""

from skin_lightning.results.sweep import SweepSummary, main

__all__ = ["SweepSummary", "main"]

if __name__ == "__main__":
    main()
