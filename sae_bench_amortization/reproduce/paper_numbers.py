"""The numbers the paper reports, by target: what ``saebench reproduce`` prints beside ours.

Values are those of the paper's summary (``Reported numbers``); a bound the paper states in words ("early
checkpoints with dense rate above 0.66") is kept as a bound, never as a value."""

from __future__ import annotations

from dataclasses import dataclass

METRICS = ("nmse", "dead_rate", "delta_f1", "absorption_rate")  # the paper's columns, in its order
LABELS = {
    "nmse": "NMSE",
    "dead_rate": "dead",
    "dense_rate": "dense",
    "delta_f1": "ΔF1",
    "absorption_rate": "absorption",
}


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's table: its label, the mode of ours it is compared with, its values
    (metric → number; a metric the paper does not report is absent) and bounds (metric → ('>', 0.66))."""

    label: str
    mode: str
    values: dict[str, float]
    bounds: dict[str, tuple[str, float]] | None = None


PAPER_ROWS: dict[str, tuple[PaperRow, ...]] = {
    "pythia-topk": (
        PaperRow("Pythia-160M / TopK, full", "amortized",
                 {"nmse": 1.499, "dead_rate": 0.307, "delta_f1": 0.053, "absorption_rate": 0.225}),
        PaperRow("Pythia-160M / TopK, semi", "semi:30",
                 {"nmse": 0.087, "dead_rate": 0.022, "delta_f1": 0.036, "absorption_rate": 0.134}),
        PaperRow("Pythia-160M / LocA-SAE, local", "loca",
                 {"nmse": 0.427, "dead_rate": 0.000, "delta_f1": 0.013, "absorption_rate": 0.055}),
    ),
    "gemma-jumprelu": (
        PaperRow("Gemma-2-2B / JumpReLU, full", "amortized",
                 {"nmse": 0.341, "dead_rate": 0.102, "delta_f1": 0.032, "absorption_rate": 0.923}),
        PaperRow("Gemma-2-2B / JumpReLU, semi", "semi:30",
                 {"nmse": 0.236, "dead_rate": 0.086, "delta_f1": 0.001, "absorption_rate": 0.000}),
    ),
    "batchtopk-steps": (
        PaperRow("BatchTopK, 5 ISTA steps", "semi:5",
                 {"nmse": 0.477, "dead_rate": 0.000, "absorption_rate": 0.110}),
        PaperRow("BatchTopK, 50 ISTA steps", "semi:50",
                 {"nmse": 0.046, "dead_rate": 0.000, "absorption_rate": 0.121}),
    ),
    "dynamics": (
        PaperRow("Standard SAE, early checkpoints (ours: the first half's largest)", "amortized", {},
                 {"dense_rate": (">", 0.66)}),
        PaperRow("Standard SAE, late checkpoint", "amortized",
                 {"dead_rate": 0.352, "delta_f1": 0.501, "absorption_rate": 0.916}),
    ),
    "gated-pattern": (),  # the paper reports a pattern (Gated against TopK / JumpReLU), no numbers
}  # fmt: skip
