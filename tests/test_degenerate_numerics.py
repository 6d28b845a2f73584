"""Degenerate numerics (issue 26, item 6): an all-zero decoder row is left out of the sparse coding (no
0/0 = NaN anywhere), codes that carry no information give null ΔF1/absorption with a reason (never 0),
explained variance is null with a reason, and a printed table keeps a null metric's column and prints huge
numbers in scientific form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from sklearn.decomposition import sparse_encode

from sae_bench_amortization.adapters import ISTARefinedSAE
from sae_bench_amortization.inference.dictionary import (
    decode,
    dictionary_of,
    sparse_coding_targets,
    zero_rows_note,
)
from sae_bench_amortization.inference.solver import objective
from sae_bench_amortization.metrics.concepts import (
    NO_LATENT_FIRES,
    SplittingAccumulator,
    absorption_scores,
    null_reason,
)
from sae_bench_amortization.metrics.reconstruction import ReconstructionAccumulator
from sae_bench_amortization.metrics.refit import refit_on_support
from sae_bench_amortization.reports.tables import format_number

from conftest import planted_standard_sae, read_result, write_activations

D_IN, D_SAE, DEAD = 16, 32, 5


def zero_row_topk(dtype: str = "float64") -> TopKSAE:
    """A TopK SAE with decoder-norm rescaling whose latent DEAD has an all-zero W_dec row."""
    torch.manual_seed(0)
    cfg = TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=4, rescale_acts_by_decoder_norm=True, dtype=dtype)
    sae = TopKSAE(cfg)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.normal_(0, 0.3)
        sae.W_dec[DEAD] = 0
    return sae


def zero_row_standard() -> StandardSAE:
    """A StandardSAE whose latent DEAD has an all-zero W_dec row but an encoder that always fires."""
    torch.manual_seed(1)
    sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype="float64"))
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.normal_(0, 0.3)
        sae.W_dec[DEAD] = 0
        sae.b_enc[DEAD] = 100.0
    return sae


def sklearn_codes(D: torch.Tensor, r: torch.Tensor, lam: float) -> np.ndarray:
    """min ½‖r − c·D‖² + λ‖c‖₁, c ≥ 0 per token (sklearn's lasso_cd as tests/test_inference.py calls it)."""
    return sparse_encode(
        r.numpy(), D.numpy(), algorithm="lasso_cd", alpha=lam, positive=True, max_iter=100_000
    )


@pytest.mark.parametrize("lam", [0.05, 0.3])
def test_zero_row_non_amortized_codes_match_sklearn_on_the_other_rows(lam):
    sae = zero_row_topk()
    x = torch.randn(60, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    refined = ISTARefinedSAE.from_sae(sae, n_steps=None, init="zero", l1_coefficient=lam, tol=1e-8)
    z = refined.encode(x)
    assert torch.isfinite(z).all()
    assert torch.equal(z[:, DEAD], torch.zeros(60, dtype=z.dtype))
    alive = [j for j in range(D_SAE) if j != DEAD]
    W_dec = sae.W_dec.detach()[alive]
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)  # independent: the live rows, unit norm
    r = x - sae.b_dec.detach()  # TopK SAE-Lens default: b_dec subtracted from the input
    reference = sklearn_codes(D, r, lam)
    # sklearn's coordinate descent stops at its own tolerance (1e-4): codes agree to that, and ours are
    # at least as good on the objective
    np.testing.assert_allclose(z[:, alive].numpy(), reference, atol=1e-4)
    ours = float(objective(D, r, z[:, alive], lam).sum())
    assert ours <= float(objective(D, r, torch.from_numpy(reference), lam).sum()) * (1 + 1e-7)


def test_zero_row_is_zero_in_dictionary_and_named_in_the_note():
    sae = zero_row_topk()
    dictionary = dictionary_of(sae)
    assert torch.isfinite(dictionary.D).all() and not dictionary.D[DEAD].any()
    assert dictionary.n_zero_rows == 1 and bool(dictionary.zero_rows[DEAD])
    assert zero_rows_note(sae, "S") == (
        f"SAE S: 1 of {D_SAE} decoder rows are all zero: those latents are left out of the sparse "
        "coding (always 0)"
    )
    assert zero_rows_note(_healthy(), "S") is None
    assert zero_rows_note(zero_row_standard(), "S").endswith(
        "(always 0 in non_amortized codes; semi:T steps only shrink the encoder's codes on them)"
    )


def _healthy() -> StandardSAE:
    sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE))
    with torch.no_grad():
        sae.W_dec.normal_()
    return sae


def test_semi_codes_on_a_zero_row_are_textbook_ista_steps():
    """A zero row's gradient is 0: each ISTA step shrinks the encoder's code on it by λ/L (the paper's
    hand-written update, tests/test_paper_protocol.py); the other latents never see it."""
    sae = zero_row_standard()
    x = torch.randn(30, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    lam, steps = 0.5, 5
    with torch.no_grad():
        start = sae.encode(x)
        assert (start[:, DEAD] > 0).all()  # the encoder fires on the dead row
        semi = ISTARefinedSAE.from_sae(sae, n_steps=steps, l1_coefficient=lam).encode(x)
        W_dec = sae.W_dec.double()
        step = 1 / float(torch.linalg.matrix_norm(W_dec, ord=2) ** 2)
        shrunk = (start[:, DEAD] - steps * step * lam).clamp(min=0)
        torch.testing.assert_close(semi[:, DEAD], shrunk, rtol=1e-4, atol=1e-5)
        alive = [j for j in range(D_SAE) if j != DEAD]
        z, D, r = start[:, alive], W_dec[alive], x - sae.b_dec
        for _ in range(steps):  # the textbook update on the other rows
            z = torch.clamp(z - step * ((z @ D - r) @ D.T + lam), min=0)
        torch.testing.assert_close(semi[:, alive], z, rtol=1e-4, atol=1e-5)
        solved = ISTARefinedSAE.from_sae(sae, n_steps=None, init="zero", l1_coefficient=lam)
        assert not solved.encode(x)[:, DEAD].any()  # non_amortized: always 0
    rescaled = zero_row_topk()  # its encoder multiplies by the norm 0: never fires the row
    x = torch.randn(30, D_IN, dtype=torch.float64)
    codes = ISTARefinedSAE.from_sae(rescaled, n_steps=steps, l1_coefficient=lam).encode(x)
    assert torch.isfinite(codes).all() and not codes[:, DEAD].any()


def test_decode_has_no_nan_with_a_zero_row():
    sae = zero_row_topk()
    x = torch.randn(20, D_IN, dtype=torch.float64)
    codes = sae.encode(x)
    assert torch.isnan(sae.decode(codes)).all()  # SAE-Lens: 0 · (1/‖0‖) = NaN on every token
    alive = [j for j in range(D_SAE) if j != DEAD]
    W_dec = sae.W_dec.detach()[alive]
    expected = codes[:, alive] @ (W_dec / W_dec.norm(dim=-1, keepdim=True)) + sae.b_dec
    torch.testing.assert_close(decode(sae, codes), expected.detach())
    refined = ISTARefinedSAE.from_sae(sae, n_steps=None, init="zero", l1_coefficient=0.1)
    assert torch.isfinite(refined.decode(refined.encode(x))).all()
    healthy = _healthy()
    codes = healthy.encode(torch.randn(20, D_IN))
    assert torch.equal(decode(healthy, codes), healthy.decode(codes))  # unchanged elsewhere


def test_refit_drops_a_zero_row_from_the_support():
    sae = zero_row_standard()
    x = torch.randn(25, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    D, targets = dictionary_of(sae).D, sparse_coding_targets(sae, x)
    codes = torch.relu(targets @ D.T)
    codes[:, DEAD] = 1.0  # on the support of every token
    refit = refit_on_support(D, targets, codes)
    assert torch.equal(refit[:, DEAD], torch.zeros(25, dtype=refit.dtype))
    without = codes.clone()
    without[:, DEAD] = 0
    torch.testing.assert_close(refit, refit_on_support(D, targets, without))


def _save_zero_row_sae(folder):
    sae = zero_row_topk("float32")
    sae.save_model(folder / "zero_row")
    acts = torch.randn(600, D_IN, generator=torch.Generator().manual_seed(5))
    return folder / "zero_row", write_activations(folder / "acts.safetensors", acts)


@pytest.mark.parametrize("lam", [["--l1-coefficient", "0.1", "--objective", "l1"], []])
def test_cli_zero_row_runs_with_a_note(cli, tmp_path, lam):
    sae, acts = _save_zero_row_sae(tmp_path)
    result = cli(
        "run", "--eval", "amortization_gap", "--sae-path", sae, "--activations", acts,
        "--output-dir", tmp_path / "out", "--device", "cpu", *lam,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert f"1 of {D_SAE} decoder rows are all zero" in result.err
    rows = read_result(tmp_path / "out", "amortization_gap")["eval_result_details"]
    for row in rows:
        for key in ("nmse", "nmse_refit", "explained_variance", "objective", "l0"):
            assert row[key] is not None and np.isfinite(row[key]), (row["mode"], key)


def _zero_codes_accumulator(n=600, n_concepts=3):
    labels = torch.rand(n, n_concepts, generator=torch.Generator().manual_seed(6)) < 0.3
    tokens = SplittingAccumulator([f"c{i}" for i in range(n_concepts)], keep_inputs=True)
    tokens.update(torch.zeros(n, 8), labels, torch.zeros(n, 4))
    return tokens, labels


def test_codes_without_information_give_null_delta_f1_with_a_reason():
    tokens, _ = _zero_codes_accumulator()
    rows = tokens.scores()
    assert len(rows) == 3
    for row in rows:
        assert row["f1_at_1"] is None and row["f1_at_2"] is None and row["delta_f1"] is None
        assert row["reason"] == NO_LATENT_FIRES
    assert (
        null_reason(rows, "delta_f1", "ΔF1")
        == f"ΔF1 measured on none of 3 concepts: {NO_LATENT_FIRES} (3)"
    )
    for row in absorption_scores(tokens, torch.randn(8, 4)):
        assert row["absorption_rate"] is None and row["full_absorption_rate"] is None
        assert row["reason"] == NO_LATENT_FIRES


def test_constant_codes_and_informative_codes():
    n = 600
    labels = torch.rand(n, 1, generator=torch.Generator().manual_seed(7)) < 0.3
    constant = SplittingAccumulator(["c"])
    constant.update(
        torch.full((n, 4), 2.5), labels
    )  # every latent fires, identically on every token
    assert (
        constant.scores()[0]["reason"]
        == "the codes carry no information: every token has the same codes"
    )
    informative = SplittingAccumulator(["c"])
    codes = torch.zeros(n, 4)
    codes[:, 1] = labels[:, 0].float()  # latent 1 is the concept exactly
    codes[:, 3] = 1.0  # a constant latent beside it
    informative.update(codes, labels)
    row = informative.scores()[0]
    assert row["reason"] is None and row["f1_at_1"] == 1.0 and row["delta_f1"] == 0.0


def test_explained_variance_null_has_a_reason():
    zeros = ReconstructionAccumulator()
    zeros.update(torch.zeros(10, 4), torch.ones(10, 4))
    assert zeros.explained_variance is None
    assert (
        zeros.explained_variance_reason
        == "the activations are all zero, so explained variance is 0/0"
    )
    huge = ReconstructionAccumulator()
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(8)) * 1e20
    huge.update(x, x * 0.9)
    assert huge.explained_variance is None
    assert (
        "not positive" in huge.explained_variance_reason
        and "d_in 4" in huge.explained_variance_reason
    )
    fine = ReconstructionAccumulator()
    fine.update(x / 1e20, x / 1e20 * 0.9)
    assert fine.explained_variance is not None and fine.explained_variance_reason is None


def test_cli_all_zero_activations_with_labels(cli, tmp_path):
    """amortization_gap per mode: ΔF1 null (not 0) with a reason, EV null with a reason; splitting: mean
    null with a reason, no concept counted."""
    planted = planted_standard_sae(tmp_path)
    labels = torch.rand(1000, 4, generator=torch.Generator().manual_seed(9)) < 0.2
    acts = write_activations(
        tmp_path / "zeros.safetensors", torch.zeros(1000, 20), labels, ["a", "b", "c", "d"]
    )
    common = ["--sae-path", planted.path, "--activations", acts, "--device", "cpu"]
    gap = cli("run", "--eval", "amortization_gap", *common, "--l1-coefficient", "0.1",
              "--output-dir", tmp_path / "gap")  # fmt: skip
    assert gap.code == 0, gap.err
    assert "null explained_variance (every mode): the activations are all zero" in gap.out
    assert (
        "null delta_f1 (amortized, semi:5, semi:25): ΔF1 measured on none of 4 concepts: the codes "
        "carry no information: every token has the same codes" in gap.out
    )
    for row in read_result(tmp_path / "gap", "amortization_gap")["eval_result_details"]:
        assert row["explained_variance"] is None and row["delta_f1"] is None
        assert "all zero" in row["undefined"]["explained_variance"]
        assert "no information" in row["undefined"]["delta_f1"]
    split = cli("run", "--eval", "splitting", *common, "--output-dir", tmp_path / "split")
    assert split.code == 0, split.err
    result = read_result(tmp_path / "split", "splitting")
    metrics = result["eval_result_metrics"]["splitting"]
    assert metrics["mean_delta_f1"] is None and metrics["n_concepts"] == 0
    assert metrics["mean_f1_at_1"] is None and metrics["mean_f1_at_2"] is None
    assert "no information" in metrics["null_reason"]
    for row in result["eval_result_details"]:
        assert (
            row["f1_at_1"] is None and row["delta_f1"] is None and "no information" in row["reason"]
        )


def test_format_number():
    assert format_number(None, ".4f") == "-"
    assert format_number(0.12345, ".4f") == "0.1235"
    assert format_number(1.2345e40, ".4f") == "1.23e+40"
    assert format_number(-123456789.123, ".4f") == "-1.23e+08"
    assert format_number(51068.0572, ".4f") == "51068.0572"  # 10 characters: as is


def test_table_keeps_a_null_column_and_prints_huge_numbers_short():
    from sae_bench_amortization.evals.amortization_gap.main import format_table

    why = "the activations are all zero, so explained variance is 0/0"
    rows = [
        {"mode": "amortized", "nmse": 0.5, "nmse_refit": 0.4, "explained_variance": None,
         "l0": 3.0, "objective": 1.2345e40, "dead_rate": 0.1, "delta_f1": None,
         "undefined": {"explained_variance": why}},
        {"mode": "non_amortized", "nmse": 0.2, "nmse_refit": 0.2, "explained_variance": None,
         "l0": 2.0, "objective": 1.0, "dead_rate": 0.0, "delta_f1": None,
         "undefined": {"explained_variance": why}},
    ]  # fmt: skip
    lines = format_table("sae", rows, 0.1).splitlines()
    assert lines[1].split() == ["mode", "NMSE", "NMSE-refit", "EV", "L0", "objective", "dead"]
    # null with a reason: "undef" (the reason below the table, naming the modes); without: not shown
    assert lines[2].split() == [
        "amortized",
        "0.5000",
        "0.4000",
        "undef",
        "3.00",
        "1.23e+40",
        "0.100",
    ]
    assert f"null explained_variance (every mode): {why}" in lines
    assert "ΔF1" not in lines[1]  # null without a reason (not measured at all): no column


def test_table_shows_counts_tells_undefined_from_not_applicable_and_names_the_modes():
    """Concept-averaged cells carry their concept count; a null with a reason is "undef", one without
    "n/a"; each null line names the modes it applies to; the legend explains every shown column."""
    from sae_bench_amortization.evals.amortization_gap.main import format_table

    base = {
        "nmse": 0.1,
        "l0": 2.0,
        "objective": 1.0,
        "dead_rate": 0.0,
        "delta_f1": 0.02,
        "n_concepts_delta_f1": 7,
        "full_absorption_rate": 0.25,
        "n_concepts_full_absorption": 7,
    }
    miss = "the main latents never miss the concept (absorption 0/0)"
    rows = [
        {"mode": "amortized", **base, "absorption_rate": 0.4, "n_concepts_absorption": 5,
         "l1_coefficient": None},
        {"mode": "semi:5", **base, "absorption_rate": None, "l1_coefficient": 0.1,
         "undefined": {"absorption_rate": miss}},
        {"mode": "non_amortized", **base, "absorption_rate": None, "l1_coefficient": 0.1,
         "undefined": {"absorption_rate": miss}},
    ]  # fmt: skip
    lines = format_table("sae", rows, 0.1).splitlines()
    header = lines[1].split()
    assert header[-4:] == ["ΔF1", "absorb", "absorb|miss", "λ"]
    amortized, semi = lines[2].split(), lines[3].split()
    assert amortized[-7:] == ["0.0200", "(7)", "0.2500", "(7)", "0.400", "(5)", "n/a"]
    assert semi[-6:] == ["0.0200", "(7)", "0.2500", "(7)", "undef", "0.1"]
    assert f"null absorption_rate (semi:5, non_amortized): {miss}" in lines
    legend = lines[lines.index("columns:") + 1 :]
    assert [line.split()[0] for line in legend] == [*header[1:], "undef", "n/a"]
