"""The documentation checks itself: every relative link, image and anchor of README.md and docs/ resolves, and every
command in a code block composes its config with the overrides it shows (group choices such as experiment=demo,
loss=focal or model=... included), so a renamed file, heading, config or key fails here before a reader finds it."""

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from skin_lightning.cli import CONFIG_DIR

from conftest import compose_config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SCRIPTS = {
    name: target.split(":")[0].removeprefix("skin_lightning.")
    for name, target in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"].items()
}


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def prose(text: str) -> str:
    """The page without its code blocks and inline code, where brackets are code, not links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", path.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_image_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.exists():
            broken.append(f"{target}: no {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {page_id(resolved)}")
    assert not broken, f"{page_id(page)}: {broken}"


def commands(page: Path) -> list[tuple[int, str, list[str]]]:
    """(line, entry point, arguments) of every Hydra command in the page's code blocks."""
    text = page.read_text()
    found = []
    for block in FENCE.finditer(text):
        start = text[: block.start(2)].count("\n") + 1
        lines = block.group(2).splitlines()
        k = 0
        while k < len(lines):
            offset, line = k, lines[k]
            while line.endswith("\\") and k + 1 < len(lines):
                k += 1
                line = line[:-1] + " " + lines[k]
            k += 1
            words = shlex.split(line, comments=True)
            entry = None
            if words[:2] == ["python", "-m"] and len(words) > 2 and words[2].startswith("skin_lightning."):
                entry, arguments = words[2].removeprefix("skin_lightning."), words[3:]
            elif words and words[0] in SCRIPTS:
                entry, arguments = SCRIPTS[words[0]], words[1:]
            if entry and (Path(CONFIG_DIR) / f"{entry}.yaml").exists():
                found.append((start + offset, entry, arguments))
    return found


EXAMPLE_FILE = re.compile(r"^#\s*(?:[\w.-]+/)*?([\w-]+)/([\w-]+)\.yaml\b")


def write_example_configs(page: Path, folder: Path) -> None:
    """The page's YAML blocks that open with their file's name (`# my_configs/loss/smooth_ce.yaml: ...`), written
    into `folder` as a config folder, so a command that puts the reader's own folder on Hydra's search path
    composes with the very files the page shows."""
    for block in FENCE.finditer(page.read_text()):
        found = EXAMPLE_FILE.match(block.group(2)) if block.group(1) == "yaml" else None
        if found:
            (folder / found.group(1)).mkdir(parents=True, exist_ok=True)
            (folder / found.group(1) / f"{found.group(2)}.yaml").write_text(block.group(2))


def compositions(arguments: list[str]) -> list[list[str]]:
    """The override lists a command composes: one per value of a multirun's comma-separated sweep."""
    multirun = "-m" in arguments or "--multirun" in arguments
    overrides = [
        word for word in arguments
        if "=" in word and not word.startswith("-") and not word.lstrip("+~").startswith("hydra")
    ]
    swept = [
        (k, word.split("=", 1)) for k, word in enumerate(overrides)
        if multirun and "," in word and not word.split("=", 1)[1].startswith(("[", "{"))
    ]
    base = [word.split(",")[0] if any(k == i for i, _ in swept) else word for k, word in enumerate(overrides)]
    runs = [base]
    for k, (key, values) in swept:
        runs += [[*base[:k], f"{key}={value}", *base[k + 1:]] for value in values.strip("'\"").split(",")[1:]]
    return runs


CASES = [(page, line, entry, arguments) for page in PAGES for line, entry, arguments in commands(page)]


def test_the_pages_show_commands_to_check():
    entries = {entry for _, _, entry, _ in CASES}
    assert {"train", "evaluate", "predict", "explain", "export", "prepare"} <= entries


@pytest.mark.parametrize(
    ("page", "line", "entry", "arguments"), CASES, ids=[f"{page_id(c[0])}:{c[1]}" for c in CASES]
)
def test_every_command_composes_its_config(page, line, entry, arguments, tmp_path):
    searchpath = []
    if any(word.startswith("hydra.searchpath=") for word in arguments):
        write_example_configs(page, tmp_path)
        searchpath = [f"hydra.searchpath=[file://{tmp_path}]"]
    for overrides in compositions(arguments):
        overrides = [*overrides, *searchpath]
        try:
            compose_config(entry, overrides)
        except (HydraException, OmegaConfBaseException) as error:
            pytest.fail(f"{page_id(page)}:{line}: {entry} {' '.join(overrides)} does not compose: {error}")


def test_the_checks_see_what_they_check(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n## The `x=y` part, again\n## The `x=y` part, again\n[a](other.md#top) ![b](fig.png) "
        "[c](https://example.org) `[not](a link)`\n```bash\npython -m skin_lightning.train -m experiment=a,b \\\n"
        "    seed=1,2 input=[p,q]  # two sweeps\nskin-evaluate ckpt_path=x\npython benchmarks/x.py a=b\n```\n"
    )
    assert anchors(page) == {"top", "the-xy-part-again", "the-xy-part-again-1"}
    assert links(page) == ["other.md#top", "fig.png"]
    assert [(line, entry) for line, entry, _ in commands(page)] == [(6, "train"), (8, "evaluate")]
    (_, _, arguments), _ = commands(page)
    assert compositions(arguments) == [
        ["experiment=a", "seed=1", "input=[p,q]"], ["experiment=b", "seed=1", "input=[p,q]"],
        ["experiment=a", "seed=2", "input=[p,q]"],
    ]
