"""The ``parameters`` of Triton's ``RepositoryModelLoad`` and ``RepositoryModelUnload``, as leadgw
reads them. ``tritonclient``'s ``load_model(name)`` and ``unload_model(name)`` send none (or
Triton's own ``unload_dependents``) and work unchanged.

Load: ``version`` (a version number), ``promote`` (bool), ``rollback`` (bool), ``canary_weight``
(string, a share in [0, 1]; "0" ends the canary), ``shadow`` (bool; false ends the shadow),
``shadow_rate`` (string, the share of leads the shadow compares, in [0, 1]: with ``shadow`` true,
or alone to change the rate of the shadow that is on), ``alias`` (string: name ``version`` so).
Unload: ``version``, ``force`` (bool).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

from leadgw_client.pb.inference import grpc_service_pb2 as pb
from runtimes.control import LoadOptions
from runtimes.errors import InvalidInput, shown

LOAD_KEYS = ("version", "promote", "rollback", "canary_weight", "shadow", "shadow_rate", "alias")
UNLOAD_KEYS = ("version", "force", "unload_dependents")


def load_request(request: pb.RepositoryModelLoadRequest) -> tuple[str | None, LoadOptions]:
    params = request.parameters
    _check_model(request.model_name)
    _check_keys(params, LOAD_KEYS, "RepositoryModelLoad")
    options = LoadOptions(
        promote=_flag(params, "promote") or False,
        rollback=_flag(params, "rollback") or False,
        canary_weight=_share(params, "canary_weight", "canary weight"),
        shadow=_flag(params, "shadow"),
        shadow_rate=_share(params, "shadow_rate", "parameter 'shadow_rate'"),
        alias=_text(params, "alias"),
    )
    actions = [options.promote, options.rollback, options.canary_weight is not None]
    shadowing = options.shadow is not None or options.shadow_rate is not None
    if sum(actions) + shadowing > 1:
        raise InvalidInput(
            "RepositoryModelLoad: set one of promote, rollback, canary_weight, shadow"
        )
    if options.shadow is False and options.shadow_rate is not None:
        raise InvalidInput("parameter 'shadow_rate' needs a shadow: shadow is false here")
    return _version(params), options


def unload_request(request: pb.RepositoryModelUnloadRequest) -> tuple[str | None, bool]:
    params = request.parameters
    _check_model(request.model_name)
    _check_keys(params, UNLOAD_KEYS, "RepositoryModelUnload")
    return _version(params), _flag(params, "force") or False


def _check_model(name: str) -> None:
    if not name:
        raise InvalidInput("model_name is empty: name the model to load or unload")


def _check_keys(
    params: Mapping[str, pb.ModelRepositoryParameter], known: tuple[str, ...], rpc: str
) -> None:
    unknown = sorted(set(params) - set(known))
    if not unknown:
        return
    if "config" in unknown or any(k.startswith("file:") for k in unknown):
        raise InvalidInput(
            f"{rpc}: leadgw does not take a model config or files in the request; put the "
            "version folder and config.toml in the repository, then load it"
        )
    raise InvalidInput(
        f"{rpc}: unknown parameters {shown(unknown, 200)}; known: {', '.join(known)}"
    )


def _value(params: Mapping[str, pb.ModelRepositoryParameter], key: str) -> object:
    if key not in params:
        return None
    param = params[key]
    choice = param.WhichOneof("parameter_choice")
    if choice is None:
        raise InvalidInput(f"parameter '{key}' has no value")
    return getattr(param, choice)


def _version(params: Mapping[str, pb.ModelRepositoryParameter]) -> str | None:
    value = _value(params, "version")
    if value is None or value == "":
        return None
    text = str(value)
    if isinstance(value, bool) or not text.isdigit():
        raise InvalidInput(f"parameter 'version' must be a version number, got {value!r}")
    return str(int(text))


def _flag(params: Mapping[str, pb.ModelRepositoryParameter], key: str) -> bool | None:
    value = _value(params, key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"parameter '{key}' must be a bool (bool_param), got {value!r}")


def _text(params: Mapping[str, pb.ModelRepositoryParameter], key: str) -> str | None:
    value = _value(params, key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"parameter '{key}' must be a non-empty string, got {value!r}")
    return value


def _share(params: Mapping[str, pb.ModelRepositoryParameter], key: str, what: str) -> float | None:
    """A share in [0, 1] (canary_weight, shadow_rate), sent as a string or an integer."""
    value = _value(params, key)
    if value is None:
        return None
    share = math.nan
    if isinstance(value, str | int) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            share = float(value)
    if math.isnan(share):
        raise InvalidInput(f"parameter '{key}' must be a number in [0, 1], got {value!r}")
    if not 0.0 <= share <= 1.0:
        raise InvalidInput(f"{what} must be within [0, 1], got {share:g}")
    return share
