"""``loca``: a LocA-SAE's own group encoders (and decoder). Not a solver run on another SAE's decoder, so
``--inference`` cannot ask for it: the row appears for a LocA-SAE (``--loca-path``, or one given as the SAE)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.modes.kind import ModeKind

if TYPE_CHECKING:  # annotations only: SAE-Lens loads with the SAEs
    from sae_lens import SAE

KIND = ModeKind(
    name="loca", syntax="loca", pattern=r"loca", rank=3, needs_lambda=False,
    role="encoder", help="a LocA-SAE's own encoder",
)  # fmt: skip


def base_record(loca: SAE, path: str | Path) -> dict[str, Any] | None:
    """The record of the SAE a LocA-SAE was made from (cfg ``base_sae``), None for LocA-SAEs made before
    it was recorded."""
    from sae_bench_amortization.sources.sanity import read_cfg  # here: `run --help` reads the kinds

    record = getattr(loca.cfg, "base_sae", None)
    cfg_json = Path(path) / "cfg.json"
    if record is None and cfg_json.is_file():  # a config class that drops the key on loading
        record = read_cfg(cfg_json).get("base_sae")
    return record if isinstance(record, dict) else None


def check_pairing(path: str | Path, loca: SAE, sae: SAE, sae_sha256: str | None) -> None:
    """One line when the LocA-SAE at ``path`` was not made from ``sae``: its recorded base's weights
    SHA-256 against ``sae_sha256`` (None: not comparable, e.g. another dtype), else the widths."""
    record = base_record(loca, path) or {}
    base = record.get("weights_sha256")
    if sae_sha256 is not None and isinstance(base, str) and base != sae_sha256:
        raise InputError(
            f"--loca-path {path} was trained from another SAE (base sha256 {base[:12]}…, this SAE "
            f"{sae_sha256[:12]}…)"
        )
    for key in ("d_in", "d_sae"):
        theirs = record.get(key, getattr(loca.cfg, key))
        if int(theirs) != int(getattr(sae.cfg, key)):
            raise InputError(
                f"--loca-path {path} was trained from another SAE (base {key} {theirs}, this SAE "
                f"{key} {getattr(sae.cfg, key)})"
            )
