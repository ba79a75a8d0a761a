"""The ``parameters`` of Triton's ``RepositoryModelLoad`` and ``RepositoryModelUnload``, as leadgw
reads them. ``tritonclient``'s ``load_model(name)`` and ``unload_model(name)`` send none (or
Triton's own ``unload_dependents``) and work unchanged.

Load: ``version`` (a version number), ``promote`` (bool), ``rollback`` (bool), ``canary_weight``
(string, a share in [0, 1]; "0" ends the canary), ``shadow`` (bool; false ends the shadow),
``alias`` (string: name ``version`` so). Unload: ``version``, ``force`` (bool).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

from leadgw_client.pb.inference import grpc_service_pb2 as pb
from runtimes.control import LoadOptions
from runtimes.errors import InvalidInput

LOAD_KEYS = ("version", "promote", "rollback", "canary_weight", "shadow", "alias")
UNLOAD_KEYS = ("version", "force", "unload_dependents")


def load_request(request: pb.RepositoryModelLoadRequest) -> tuple[str | None, LoadOptions]:
    params = request.parameters
    _check_model(request.model_name)
    _check_keys(params, LOAD_KEYS, "RepositoryModelLoad")
    options = LoadOptions(
        promote=_flag(params, "promote") or False,
        rollback=_flag(params, "rollback") or False,
        canary_weight=_weight(params),
        shadow=_flag(params, "shadow"),
        alias=_text(params, "alias"),
    )
    actions = [options.promote, options.rollback, options.canary_weight is not None]
    if sum(actions) + (options.shadow is not None) > 1:
        raise InvalidInput(
            "RepositoryModelLoad: set one of promote, rollback, canary_weight, shadow"
        )
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
    raise InvalidInput(f"{rpc}: unknown parameters {unknown}; known: {', '.join(known)}")


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


def _weight(params: Mapping[str, pb.ModelRepositoryParameter]) -> float | None:
    value = _value(params, "canary_weight")
    if value is None:
        return None
    weight = math.nan
    if isinstance(value, str | int) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            weight = float(value)
    if math.isnan(weight):
        raise InvalidInput(f"parameter 'canary_weight' must be a number in [0, 1], got {value!r}")
    if not 0.0 <= weight <= 1.0:
        raise InvalidInput(f"canary weight must be within [0, 1], got {weight:g}")
    return weight
