"""``amortized``: the SAE's own encoder."""

from sae_bench_amortization.modes import ModeKind


def build(sae, mode, l1_coefficient, settings):
    return sae


KIND = ModeKind(
    name="amortized", syntax="amortized", pattern=r"amortized", rank=0, needs_lambda=False,
    role="encoder", help="the SAE's encoder", build=build,
)  # fmt: skip
