import numpy as np
import pytest

from skin_lightning.config import check_config
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.split import fold_split
from skin_lightning.errors import UserError

from conftest import compose_train


def datamodule(demo_root, tmp_path, *overrides) -> SkinDataModule:
    cfg = compose_train(["experiment=demo", f"data.root={demo_root}", "data.cache=none", *overrides])
    check_config(cfg)
    module = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed, tmp_path)
    module.setup("fit")
    return module


def test_fold_jobs_hold_out_disjoint_stratified_folds_that_cover_train(demo_root, tmp_path):
    folds = [datamodule(demo_root, tmp_path, "data.folds=4", f"data.fold={k}") for k in range(4)]
    train_all = {str(p) for p in folds[0].samples("train").paths} | {str(p) for p in folds[0].samples("val").paths}
    held = [{str(p) for p in dm.samples("val").paths} for dm in folds]
    assert set().union(*held) == train_all
    assert sum(len(h) for h in held) == len(train_all)  # disjoint
    for dm in folds:
        assert not {str(p) for p in dm.samples("train").paths} & {str(p) for p in dm.samples("val").paths}
    per_class = np.array([np.bincount(dm.samples("val").labels, minlength=len(dm.classes)) for dm in folds])
    assert (per_class.max(axis=0) - per_class.min(axis=0) <= 1).all()
    assert (tmp_path / "split.csv").exists()


def test_without_a_fold_the_validation_fraction_is_used(demo_root, tmp_path):
    dm = datamodule(demo_root, tmp_path, "data.val_fraction=0.2")
    total = len(dm.samples("train")) + len(dm.samples("val"))
    assert len(dm.samples("val")) == pytest.approx(0.2 * total, abs=len(dm.classes))


def test_the_seed_picks_the_partition():
    labels = list(np.repeat(np.arange(3), 20))
    same = fold_split(labels, 5, 1, seed=7)[1], fold_split(labels, 5, 1, seed=7)[1]
    assert np.array_equal(*same)
    assert not np.array_equal(fold_split(labels, 5, 1, seed=8)[1], same[0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.fold=5"], "data.fold=5 is invalid: expected a whole number from 0 to 4"),
        (["data.fold=0", "data.folds=1"], "data.folds=1 is invalid"),
        (["data.fold=-1"], "data.fold=-1 is invalid"),
    ],
)
def test_bad_fold_settings_are_named(overrides, message):
    cfg = compose_train(["experiment=demo", "data.root=/nowhere", *overrides])
    with pytest.raises(UserError, match=message):
        check_config(cfg)


def test_more_folds_than_images_is_a_user_error():
    with pytest.raises(UserError, match="data.folds=9"):
        fold_split([0, 1, 0, 1], 9, 0, seed=0)
