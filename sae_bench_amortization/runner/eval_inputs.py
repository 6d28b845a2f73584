"""What an eval runs with and where its results go, as the plan (``runner.plan``) decides and the loop
(``runner.loop``) then uses: the eval's config for a request, and the name of each result file."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from sae_bench_amortization.modes import InferenceMode, result_sae_id
from sae_bench_amortization.registry import EvalEntry
from sae_bench_amortization.runner.request import EvalRequest
from sae_bench_amortization.sources.saes import SAESpec

if TYPE_CHECKING:  # annotations only
    from _typeshed import DataclassInstance

# request fields an eval's config receives when it has a field of the same name
REQUEST_FIELDS = ("n_tokens", "skip_tokens", "batch_size", "seed")


def config_for(entry: EvalEntry, request: EvalRequest) -> DataclassInstance:
    """The eval's config: ``configs[entry.name]`` as given, else its defaults filled from the request
    (fields named like :data:`REQUEST_FIELDS`, ``modes`` when the user named modes) and its options."""
    if entry.name in request.configs:
        return request.configs[entry.name]
    config = entry.default_config()
    names = {f.name for f in dataclasses.fields(config)}
    values = {name: getattr(request, name) for name in REQUEST_FIELDS if name in names}
    if "modes" in names and request.inference.modes_given:
        values["modes"] = [mode.name for mode in request.inference.modes]
    for option in entry.options:
        if option.dest in request.eval_options:
            value = request.eval_options[option.dest]
            option.validate(value)
            values[option.dest] = list(value) if option.repeatable else value
    return dataclasses.replace(config, **values)


def result_name(
    entry: EvalEntry, spec: SAESpec, mode: InferenceMode | None, modes: list[InferenceMode]
) -> tuple[str, str]:
    """(release, sae_id) of a result file: the eval's own naming, else ``<release>_<sae_id>[__<mode>]``."""
    if entry.result_name is not None:
        return entry.result_name(spec, mode, modes)
    return spec.release, spec.sae_id if mode is None else result_sae_id(spec.sae_id, mode, modes)
