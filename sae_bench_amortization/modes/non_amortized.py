"""``non_amortized``: sparse coding from zero to tolerance on the decoder."""

from sae_bench_amortization.modes import ModeKind


def build(sae, mode, l1_coefficient, settings):
    from sae_bench_amortization.adapters.ista_refined import ISTARefinedSAE  # SAE-Lens loads lazily

    return ISTARefinedSAE.from_sae(
        sae, n_steps=None, init="zero", l1_coefficient=l1_coefficient, tol=settings.tol
    )


KIND = ModeKind(
    name="non_amortized", syntax="non_amortized", pattern=r"non_amortized", rank=2, needs_lambda=True,
    role="optimum", help="sparse coding to tolerance", build=build,
)  # fmt: skip
