"""The ground-truth benchmark: a synthetic activation generator with planted features, hierarchies and
composite concepts (:mod:`.generator`), reference SAEs with planted pathologies (:mod:`.reference_saes`),
a streaming SAE trainer (:mod:`.training`) and the embedded offline default built from them (:mod:`.default`).
"""

from sae_bench_amortization.atomic import ensure_output_dir, refuse_existing
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.synthetic.generator import (
    GroundTruth,
    PlantedExtras,
    SyntheticActivations,
    SyntheticConfig,
    ground_truth,
    ground_truth_of,
    load_synthetic_model,
    load_truth,
    stream,
    truth_path,
    write_synthetic,
)
from sae_bench_amortization.synthetic.reference_saes import REFERENCE_NAMES, write_reference_saes
from sae_bench_amortization.targets import check_apart, check_creatable, check_replaceable


def write_benchmark(
    config: SyntheticConfig,
    n_tokens: int,
    out: str | None,
    reference_saes: str | None,
    *,
    overwrite: bool = False,
    synthetic_model: str | None = None,
    start_token: int = 0,
) -> str:
    """``saebench synth``: the activation file (``out``, truth sidecar beside it) and/or the reference
    SAEs (``reference_saes`` folder); returns what was written, one line per file. ``synthetic_model``: a
    SAE-Lens synthetic model (config file or saved folder) in place of the flags' features and firing;
    ``config`` then gives only the planted extras (composites, noise, seed). ``start_token``: the file
    holds tokens [start_token, start_token + n_tokens) of the world (a held-out span of the same one)."""
    from dataclasses import fields
    from pathlib import Path

    if not out and not reference_saes:
        raise InputError("give --out FILE, --reference-saes DIR, or both")
    if start_token < 0:
        raise InputError(f"--start-token must be >= 0, got {start_token}")
    writes = {
        "--out": out,
        "--out's truth sidecar": out and truth_path(out),
        "--reference-saes": reference_saes,
    }
    check_apart(writes, {"--synthetic-model": synthetic_model})
    if out and reference_saes:
        check_apart({"--out": out}, {"--reference-saes": reference_saes})
        check_apart({"--reference-saes": reference_saes}, {"--out": out})
    if out:  # everything checked before anything is written
        if Path(out).is_dir():
            raise InputError(f"--out is a folder, expected a file path: {out}")
        check_creatable(out, "--out")
        refuse_existing(Path(out), "--out", overwrite)
        refuse_existing(truth_path(out), "--out's truth sidecar", overwrite)
    if reference_saes:
        check_creatable(reference_saes, "--reference-saes")
        check_replaceable(reference_saes, "--reference-saes", overwrite, own=REFERENCE_NAMES.__contains__,
                          what="synth")  # fmt: skip
    if synthetic_model:
        replaced = ("d_in", "n_features", "p_max", "n_hierarchies")
        defaults = {f.name: f.default for f in fields(SyntheticConfig)}
        for name in replaced:
            if getattr(config, name) != defaults[name]:
                raise InputError(
                    f"--{name.replace('_', '-')} and --synthetic-model: the synthetic model sets it"
                )
        truth = ground_truth(load_synthetic_model(synthetic_model), config.extras())
    else:
        truth = ground_truth(config)
    lines = []
    if out:
        activations, sidecar = write_synthetic(Path(out), truth, n_tokens, start_token)
        span = (
            f"tokens {start_token}–{start_token + n_tokens}"
            if start_token
            else f"{n_tokens} tokens"
        )
        lines.append(
            f"wrote {span} x {truth.d_in} with {truth.n_features} features to {activations}"
        )
        lines.append(f"wrote the true dictionary and structure to {sidecar}")
    if reference_saes:
        folder = ensure_output_dir(reference_saes)
        lines += [f"wrote reference SAE {path}" for path in write_reference_saes(truth, folder)]
    return "\n".join(lines)


__all__ = [
    "GroundTruth",
    "PlantedExtras",
    "ground_truth_of",
    "load_synthetic_model",
    "SyntheticActivations",
    "SyntheticConfig",
    "ground_truth",
    "load_truth",
    "stream",
    "truth_path",
    "write_benchmark",
    "write_synthetic",
]
