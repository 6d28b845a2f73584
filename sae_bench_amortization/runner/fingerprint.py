"""A result's fingerprint: everything that determines its numbers, stored in the result JSON (top-level key
``fingerprint``), so a rerun can tell an up-to-date result from one made with other inputs.

Recorded: the package version, the eval and its config (without scheduling fields: batch sizes, the device),
the inference mode and how λ is set, the SAE (release, id and a SHA-256 of its weights as loaded), the
activation source (a file's SHA-256 and token count; a model's name, hook, text and tokens; a synthetic
config), the dtype, the seed, and what an eval reads itself (e.g. a ``--loca-path`` SAE's hash).
Not recorded: device, batch size, executor — they change how the work is scheduled, not what it computes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from sae_bench_amortization import __version__
from sae_bench_amortization.modes import InferenceMode, InferenceSettings

# config fields that schedule the work rather than define it (the token count is the source's), and
# the fields the runner fills per mode (recorded under ``inference`` and ``activations`` instead)
SCHEDULING_FIELDS = frozenset(
    {"batch_size", "llm_batch_size", "sae_batch_size", "n_tokens", "device", "llm_dtype"}
)
RUN_FIELDS = frozenset(
    {"inference_mode", "l1_coefficient", "lambda_calibration", "activation_source", "objective",
     "k_sparse_k"}
)  # fmt: skip


def config_identity(config: object) -> dict[str, Any]:
    """The eval config's fields that determine its numbers."""
    if dataclasses.is_dataclass(config):
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    else:
        values = dict(vars(config))
    identity = {
        name: value for name, value in values.items() if name not in SCHEDULING_FIELDS | RUN_FIELDS
    }
    return order_free(identity)


def order_free(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its ``modes`` list sorted: each mode's numbers do not depend on the order given."""
    modes = config.get("modes")
    if isinstance(modes, list | tuple):
        return {**config, "modes": sorted(modes, key=str)}
    return config


def comparable(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A stored fingerprint as this version compares it (modes of results stored in any order sorted)."""
    config = fingerprint.get("config")
    return (
        {**fingerprint, "config": order_free(config)} if isinstance(config, dict) else fingerprint
    )


def inference_identity(
    settings: InferenceSettings, mode: InferenceMode | None, per_mode: bool
) -> dict[str, Any]:
    """How codes are inferred: the mode (per-mode evals), where λ is used how it is set, and the settings
    of the modes' kinds that ``settings`` holds no field for (another distribution's kinds)."""
    identity: dict[str, Any] = {} if not per_mode else {"mode": None if mode is None else mode.name}
    if not per_mode or (mode is not None and mode.spec.needs_lambda):  # (modes: in the config)
        given = settings.l1_coefficient
        identity |= {
            "l1_coefficient": "calibrated" if given is None else given,
            "calibration_tokens": settings.calibration_tokens if given is None else None,
            "lambda_calibration": settings.lambda_calibration,
            "method": settings.method,
            "tol": settings.tol,
        }
        # the problem (results of this package made before --objective existed solved l1: no key)
        if settings.objective != "l1" or settings.k is not None:
            identity |= {"objective": settings.objective, "k": settings.k}
        if settings.objective == "k_sparse":  # no λ (the calibration tokens still set k)
            identity |= {"l1_coefficient": None, "lambda_calibration": None}
    kinds = [mode.spec] if per_mode and mode is not None else [m.spec for m in settings.modes]
    own = {kind.name: settings.own_settings(kind) for kind in kinds}
    own = {name: values for name, values in own.items() if values}
    if own:
        identity["kind_settings"] = own
    return identity


def normalized(value: object) -> Any:
    """``value`` as it reads back from JSON (tuples → lists, paths → strings)."""
    return json.loads(json.dumps(value, default=str))


def fingerprint(**parts: Any) -> dict[str, Any]:
    """The fingerprint from its parts (package version added), JSON-normalized."""
    return normalized({"package_version": __version__, **parts})


def _flatten(value: object, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}{key}.")
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): value}


def _short(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12]  # a SHA-256: its first 12 hex digits tell two apart
    return text if len(text) <= 40 else text[:37] + "..."


def changes(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    """What differs between two fingerprints, as ``key: old → new`` (the first ``limit``, then a count)."""
    before, after = _flatten(old), _flatten(new)
    missing = object()
    keys = list(after) + [key for key in before if key not in after]
    differing = [key for key in keys if before.get(key, missing) != after.get(key, missing)]
    shown = [
        f"{key}: {_short(before.get(key, 'absent'))} → {_short(after.get(key, 'absent'))}"
        for key in differing[:limit]
    ]
    more = len(differing) - limit
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
