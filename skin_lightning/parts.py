"""Builds a swappable part (loss, optimiser, scheduler, sampler, network) from its config node.

The node's `_target_` names the Python callable and its other keys are that callable's arguments, so the
conf/ folder is the one registry of choices and the callable's signature the one check of their keys.
Arguments that exist only at build time (the training split's class counts, the parameters to optimise)
are handed to the callables whose signatures name them (or take **kwargs); a config marks such a callable
`_partial_: true`, so that a torch class that takes no class counts (torch.nn.CrossEntropyLoss) is a choice too.
Every mistake ends in one UserError that names the config key.
"""

import inspect
from collections.abc import Mapping

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate

from skin_lightning.errors import SettingError, UserError, did_you_mean

HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def _target(node: Mapping, key: str):
    path = node.get("_target_") if isinstance(node, Mapping) else None
    if path is None:
        raise UserError(
            f"{key}={node!r} is not a part: its config needs a _target_ naming the Python callable that builds it "
            f"(see docs/design.md, 'Adding a loss, an optimiser, a backbone or a data layout')"
        )
    try:
        return get_object(path)
    except Exception as error:
        raise UserError(f"{key}._target_={path} cannot be imported ({error}); give a module path and a name in it")


def parameters(target) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return {}


def check_settings(node: Mapping, key: str, skip: tuple[str, ...] = ()) -> dict[str, inspect.Parameter]:
    """Every setting of the node must be an argument of its `_target_`; returns that callable's parameters."""
    target = _target(node, key)
    accepted = parameters(target)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return accepted
    for name in node:
        if name not in accepted and name not in skip and name not in HYDRA_KEYS:
            offered = [p for p, v in accepted.items() if v.kind is not inspect.Parameter.VAR_POSITIONAL]
            raise UserError(
                f"{key}.{name} is not a setting of {node['_target_']}{did_you_mean(name, offered)}; "
                f"fix the spelling or remove {key}.{name}"
            )
    return accepted


def _as_user_error(error: Exception, key: str, described: str) -> Exception:
    """The user's mistake behind a failed build, named by its config key; any other failure as it came."""
    cause = error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error
    if isinstance(cause, SettingError):
        return UserError(f"{key}.{cause.setting}={cause.value} is invalid: expected {cause.expected}")
    if isinstance(cause, UserError):
        return cause
    if isinstance(cause, TypeError | ValueError | InstantiationException):
        return UserError(f"{key} ({described}) is invalid: {cause}")
    return error


def build(node: Mapping, key: str, skip: tuple[str, ...] = (), **at_build):
    """The part `node` describes; `skip` names keys of the node that its owner reads itself."""
    accepted = check_settings(node, key, skip)
    settings = {name: value for name, value in node.items() if name not in skip}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    # a configured setting is never replaced by a build-time default (optim.fused=false stays false)
    given = {
        name: value for name, value in at_build.items() if (name in accepted or takes_any) and name not in settings
    }
    try:
        made = instantiate(settings, _convert_="all")
        return made(**given) if settings.get("_partial_") else made
    except Exception as error:
        shown = ", ".join(f"{name}={value}" for name, value in settings.items() if name not in HYDRA_KEYS)
        found = _as_user_error(error, key, f"{settings['_target_']} with {shown or 'no settings'}")
        if found is error:
            raise
        raise found from error
