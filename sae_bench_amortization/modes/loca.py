"""``loca``: a LocA-SAE's own group encoders (and decoder). Not a solver run on another SAE's decoder, so
``--inference`` cannot ask for it: the row appears for a LocA-SAE (``--loca-path``, or one given as the SAE)."""

from sae_bench_amortization.modes import ModeKind

KIND = ModeKind(
    name="loca", syntax="loca", pattern=r"loca", rank=3, needs_lambda=False,
    help="a LocA-SAE's own encoder",
)  # fmt: skip
