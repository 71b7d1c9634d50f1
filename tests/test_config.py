"""Every experiment composes, and the four versions are exactly the course scripts' recipes."""

import re
import urllib.error
from pathlib import Path

import pytest
import torchvision
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from skin_lightning.cli import CONFIG_DIR
from skin_lightning.config import check_config
from skin_lightning.errors import UserError
from skin_lightning.results.sweep import run_name
from skin_lightning.train import train

from conftest import compose_train, target

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))

# the recipes table of README.md ("The four versions"): augmentation, sampling, loss of each version
VERSIONS = {
    "v1_baseline": ("none", "shuffle", "ce"),
    "v2_weighted": ("selective", "shuffle", "weighted_ce"),
    "v3_heavy": ("heavy", "oversample", "weighted_ce"),
    "v4_selective": ("selective", "oversample", "ce"),
}
GEOMETRIC = {"rotation": 30, "hflip": 0.5, "vflip": 0.5}
NO_AUGMENT = {"rotation": 0, "hflip": 0.0, "vflip": 0.0, "color_jitter": None, "blur": None, "sharpness": None}


def test_every_experiment_is_listed():
    assert set(VERSIONS) | {"demo", "imbalance_study", "best"} == set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_passes_checks(experiment):
    cfg = compose_train([f"experiment={experiment}", "data.root=/anywhere", "output_dir=/tmp/x"])
    check_config(cfg)
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_versions_match_the_course_recipes(version):
    augment, sampler, loss = VERSIONS[version]
    cfg = compose_train([f"experiment={version}", "data.root=/anywhere", "output_dir=/tmp/x"])
    assert cfg.model.arch == "resnet50" and cfg.model.weights == "imagenet" and not cfg.model.freeze_backbone
    assert cfg.data.image_size == 84 and cfg.data.batch_size == 32
    assert cfg.trainer.max_epochs == 20
    assert (cfg.optim._target_, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (
        "torch.optim.SGD",
        1e-3,
        0.9,
        0.0,
    )
    assert cfg.optim.scheduler._target_ == target("optim/scheduler", "none")
    assert cfg.loss._target_ == target("loss", loss) and cfg.loss.label_smoothing == 0.0
    assert cfg.sampler._target_ == target("sampler", sampler)
    if sampler == "oversample":
        assert cfg.sampler.exponent == 1.0
    if loss == "weighted_ce":
        assert cfg.loss.weight_exponent == 1.0
    expected = dict(NO_AUGMENT)
    if augment in ("selective", "heavy"):
        expected.update(GEOMETRIC)
    if augment == "heavy":
        expected["color_jitter"] = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1}
        expected["blur"] = {"kernel": [5, 9], "sigma": [0.1, 5.0]}
        expected["sharpness"] = {"factor": 2.0, "p": 0.5}
    assert OmegaConf.to_container(cfg.augment) == expected


def test_missing_data_root_says_what_to_pass():
    cfg = compose_train(["output_dir=/tmp/x"])
    with pytest.raises(UserError, match=r"data.root is not set.*experiment=demo"):
        check_config(cfg)


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.val_fraction=2", "data.val_fraction"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.cache=ram", "data.cache"),
        ("sampler=oversample sampler.exponent=-1", "sampler.exponent"),
        ("optim/scheduler=cosine optim.scheduler.warmup_fraction=1", "optim.scheduler.warmup_fraction"),
        ("optim.lr=-1", "optim"),
        ("loss=focal loss.gamma=-1", "loss.gamma"),
        ("loss=class_balanced loss.beta=1", "loss.beta"),
        ("loss=ldam loss.scale=0", "loss.scale"),
        ("loss=logit_adjusted loss.tau=-1", "loss.tau"),
        ("loss.label_smoothing=1", "loss.label_smoothing"),
        ("loss=weighted_ce loss.defer_epochs=-1", "loss.defer_epochs"),
        ("+optim.momentm=0.9", "optim.momentm"),
        ("+loss.gama=2", "loss.gama"),
        ("+model.archh=resnet18", "model.archh"),
        ("loss._target_=torch.nn.NoSuchLoss", "loss._target_"),
        ("data.num_workers=many", "data.num_workers"),
        ("data.test_per_class=0", "data.test_per_class"),
        ("+trainer.max_epoch=1", "trainer.max_epoch is not an argument of lightning.Trainer; did you mean max_epochs?"),
        ("+callbacks.checkpoint.monitr=x", "callbacks.checkpoint.monitr is not a setting of lightning"),
    ],
)
def test_bad_values_name_their_key(override, key):
    cfg = compose_train([*override.split(), "data.root=/anywhere", "output_dir=/tmp/x"])
    with pytest.raises(UserError, match=re.escape(key)):
        check_config(cfg)


# every file of every config group but Hydra's own (hydra/launcher, tested in test_scale.py)
GROUP_FILES = sorted(
    (path.parent.relative_to(CONFIG_DIR).as_posix(), path.stem)
    for path in Path(CONFIG_DIR).glob("*/**/*.yaml")
    if not path.parent.relative_to(CONFIG_DIR).as_posix().startswith("hydra")
)


@pytest.mark.parametrize(("group", "choice"), GROUP_FILES, ids=[f"{g}={c}" for g, c in GROUP_FILES])
def test_every_file_of_every_group_composes_resolves_and_passes_the_checks_alone(group, choice):
    cfg = compose_train([f"{group}={choice}", "data.root=/anywhere", "output_dir=/tmp/x"])
    OmegaConf.to_container(cfg, resolve=True)
    check_config(cfg)


def test_no_recipe_is_named_like_another_groups_choice():
    """The groups that set several others at once (imbalance, experiment) name their recipes apart from every other
    choice: imbalance=focal_loss is not loss=focal, and no arm is named like an experiment."""
    recipes = {(group, choice) for group, choice in GROUP_FILES if group in ("imbalance", "experiment")}
    names = {}
    for group, choice in GROUP_FILES:
        names.setdefault(choice, set()).add(group)
    shared = {group: choice for group, choice in recipes if len(names[choice] - {"data"}) > 1}
    assert shared == {}


def test_imagenet_weights_are_fetched_before_any_image_is_read(monkeypatch, tmp_path):
    """Offline, model.weights=imagenet stops the run at its start with what to do, not after decoding the data."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    cfg = compose_train(["model.arch=resnet18", f"data.root={tmp_path}", f"output_dir={tmp_path}"])
    with pytest.raises(UserError, match=r"(?s)could not download the ImageNet weights of resnet18 .*weights=none"):
        train(cfg)


def test_run_names_are_folder_names_a_command_line_takes_back_unquoted():
    name = run_name("data.root=/data/ISIC84by84,experiment=v1_baseline,optim.lr=1e-3,+callbacks.ema.decay=0.9")
    assert name == "data.root-_data_ISIC84by84__experiment-v1_baseline__optim.lr-1e-3__+callbacks.ema.decay-0.9"
    assert run_name("") == "defaults"
    assert "/" not in run_name("model.weights=/a/b/c.pth")
    # a job's checkpoint or folder goes back into evaluate, explain or resume as a plain override
    path = f"outputs/multirun/2026-11-26_13-00-00/0_{name}/checkpoints/best.ckpt"
    assert OverridesParser.create().parse_override(f"ckpt_path={path}").value() == path


def test_versions_take_another_optimizer(tmp_path):
    """Experiments pin only the optimizer group, so optim=adamw composes cleanly with any version."""
    cfg = compose_train(["experiment=v4_selective", "optim=adamw", "data.root=/anywhere", f"output_dir={tmp_path}"])
    assert "momentum" not in cfg.optim
    check_config(cfg)


def test_optimizer_settings_it_does_not_take_are_named():
    """A setting another optimiser takes is named with the ones this one does take."""
    cfg = compose_train(["optim=adamw", "+optim.momentum=0.9", "data.root=/anywhere", "output_dir=/tmp/x"])
    named = r"optim\.momentum is not a setting of torch\.optim\.AdamW \(it takes params, lr"
    with pytest.raises(UserError, match=named):
        check_config(cfg)


def test_unknown_group_choices_and_keys_are_hydras_own_errors():
    """A misspelt choice or key never reaches our code: Hydra lists the choices, or says how to add a key."""
    with pytest.raises(MissingConfigException, match=r"(?s)loss/foo.*Available options in 'loss'.*focal"):
        compose_train(["loss=foo", "data.root=/anywhere"])
    with pytest.raises(ConfigCompositionException, match=r"optim\.momentm"):
        compose_train(["optim.momentm=0.9", "data.root=/anywhere"])


def _choices(path: Path) -> dict:
    """The group choices a config's defaults list names, as {group: choice}."""
    entries = OmegaConf.to_container(OmegaConf.load(path)).get("defaults", [])
    return {
        key.removeprefix("override /"): value
        for entry in entries
        if isinstance(entry, dict)
        for key, value in entry.items()
    }


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_states_only_what_differs_from_the_defaults(name):
    """A recipe that restates a default hides what it changes: every group it picks and every value it sets, but
    its data scale (which holds whichever data= is chosen), differs from the default run's."""
    path = Path(CONFIG_DIR) / "experiment" / f"{name}.yaml"
    defaults = _choices(Path(CONFIG_DIR) / "train.yaml")
    for group, choice in _choices(path).items():
        assert defaults.get(group) != choice, f"{name} picks {group}={choice}, the default"
    default_run = OmegaConf.to_container(compose_train([]), resolve=False)
    for section, values in OmegaConf.to_container(OmegaConf.load(path)).items():
        if section in ("defaults", "data") or not isinstance(values, dict):
            continue
        for key, value in values.items():
            assert default_run.get(section, {}).get(key) != value, f"{name} sets {section}.{key}={value}, the default"
