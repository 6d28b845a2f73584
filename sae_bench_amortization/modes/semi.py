"""``semi:T``: T ISTA/FISTA steps on the decoder, from the encoder's codes (semi-amortized inference)."""

from sae_bench_amortization.modes import ModeKind


def build(sae, mode, l1_coefficient, settings):
    from sae_bench_amortization.adapters.ista_refined import ISTARefinedSAE  # SAE-Lens loads lazily

    return ISTARefinedSAE.from_sae(
        sae,
        n_steps=mode.n_steps,
        init="encoder",
        l1_coefficient=l1_coefficient,
        method=settings.method,
    )


KIND = ModeKind(
    name="semi", syntax="semi:T", pattern=r"semi:(\d{1,6})", rank=1, needs_lambda=True,
    role="refinement", help="T ISTA steps (--solver fista: FISTA) from the encoder's codes", build=build,
)  # fmt: skip
