"""The three sparse-coding problems, checked against independent solvers: sklearn's non-negative lasso for
``l1_decoder_norm``, every support enumerated with scipy's NNLS for ``k_sparse``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from scipy.optimize import nnls
from sklearn.linear_model import Lasso

from sae_bench_amortization.inference.dictionary import Dictionary
from sae_bench_amortization.inference.k_sparse import (
    best_k_sparse,
    iht,
    keep_k_nonnegative,
    nn_omp,
    squared_error,
)
from sae_bench_amortization.inference.objectives import Problem, objective_value
from sae_bench_amortization.inference.solver import solve


def decoder_norm_problem(D: torch.Tensor) -> Problem:
    """``l1_decoder_norm`` on rows D, built as problem_of builds it for an SAE."""
    norms = D.norm(dim=1)
    unit = D / torch.where(norms > 0, norms, 1).unsqueeze(1)
    return Problem(
        "l1_decoder_norm", Dictionary(unit, torch.zeros(D.shape[1], dtype=D.dtype)), norms
    )


def planted(n_tokens: int, d_sae: int, d_in: int, k: int, seed: int = 0):
    """(D [d_sae, d_in] with row norms in 0.1–1.5, targets [n, d_in] made of k atoms plus noise)."""
    generator = torch.Generator().manual_seed(seed)
    D = torch.randn(d_sae, d_in, generator=generator, dtype=torch.float64)
    D = (
        D
        / D.norm(dim=1, keepdim=True)
        * (0.1 + 1.4 * torch.rand(d_sae, 1, generator=generator, dtype=torch.float64))
    )
    codes = torch.zeros(n_tokens, d_sae, dtype=torch.float64)
    for row in codes:
        row[torch.randperm(d_sae, generator=generator)[:k]] = 0.5 + torch.rand(
            k, generator=generator, dtype=torch.float64
        )
    noise = 0.05 * torch.randn(n_tokens, d_in, generator=generator, dtype=torch.float64)
    return D, codes @ D + noise


def test_l1_decoder_norm_equals_sklearns_nonnegative_lasso_on_unit_rows():
    D, r = planted(40, 24, 16, 3)
    lam = 0.05
    problem = decoder_norm_problem(D)
    z = problem.from_solver(solve(problem.dictionary, r, lam, tol=1e-7))
    weights = D.norm(dim=1)
    ours = objective_value(D, r, z, lam, weights)
    # sklearn: (1 / (2 n_samples)) ‖y − X w‖² + α ‖w‖₁ with X = unit rowsᵀ [d_in, d_sae], so α = λ / d_in
    unit = (D / weights[:, None]).numpy()
    reference = []
    for target in r.numpy():
        lasso = Lasso(alpha=lam / D.shape[1], positive=True, fit_intercept=False, tol=1e-12,
                      max_iter=200_000).fit(unit.T, target)  # fmt: skip
        u = torch.as_tensor(lasso.coef_)
        reference.append(
            objective_value(D, torch.as_tensor(target)[None], (u / weights)[None], lam, weights)
        )
    reference = torch.cat(reference)
    assert torch.all(ours <= reference * (1 + 1e-4)), (ours - reference).max()
    assert torch.allclose(ours, reference, rtol=1e-4)


def test_l1_decoder_norm_is_l1_when_rows_have_unit_norm():
    D, r = planted(30, 20, 12, 2, seed=1)
    D = D / D.norm(dim=1, keepdim=True)
    problem = decoder_norm_problem(D)
    plain = solve(Dictionary(D, torch.zeros(12, dtype=D.dtype)), r, 0.05, tol=1e-7)
    weighted = problem.from_solver(solve(problem.dictionary, r, 0.05, tol=1e-7))
    torch.testing.assert_close(weighted, plain, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(
        objective_value(D, r, plain, 0.05, D.norm(dim=1)), objective_value(D, r, plain, 0.05)
    )


def brute_force_k_sparse(D: torch.Tensor, r: torch.Tensor, k: int) -> torch.Tensor:
    """The optimum ½‖r − z·D‖² over z ≥ 0 with at most k actives: NNLS on every support of size k."""
    A = D.numpy().T
    best = np.full(r.shape[0], np.inf)
    for support in itertools.combinations(range(D.shape[0]), k):
        columns = A[:, support]
        for i, target in enumerate(r.numpy()):
            _, residual = nnls(columns, target)
            best[i] = min(best[i], 0.5 * residual**2)
    return torch.as_tensor(best)


@pytest.fixture(scope="module", params=[1, 2, 3])
def small_k_sparse(request):
    """(D, r, start, optimum, k): d_sae 14, d_in 8, 500 tokens of k planted atoms each; a weak start
    (the k atoms of largest raw r·d_j, as a poor encoder would pick) as the encoder's codes."""
    k = request.param
    D, r = planted(500, 14, 8, k, seed=2)
    start = keep_k_nonnegative(r @ D.T, k)
    return D, r, start, brute_force_k_sparse(D, r, k), k


def test_k_sparse_best_reaches_the_brute_force_optimum_on_most_tokens(small_k_sparse):
    D, r, start, optimum, k = small_k_sparse
    dictionary = Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype))
    z = best_k_sparse(dictionary, r, start, k)
    assert int(((z > 0).sum(-1) <= k).all()) and bool((z >= 0).all())
    found = squared_error(D, r, z)
    assert bool((found >= optimum - 1e-9).all())  # feasible: never below the optimum
    reached = (found <= optimum * (1 + 1e-6) + 1e-12).double().mean()
    assert reached >= 0.95, float(reached)
    # never worse than the start's own support refitted
    from sae_bench_amortization.inference.nnls import refit_on_support

    assert bool((found <= squared_error(D, r, refit_on_support(D, r, start)) + 1e-12).all())
    # working sets narrower than the dictionary (2k candidates): later rounds bring the atoms in
    narrow = squared_error(D, r, best_k_sparse(dictionary, r, start, k, n_candidates=2 * k))
    assert float((narrow <= optimum * (1 + 1e-6) + 1e-12).double().mean()) >= 0.95


def test_iht_keeps_at_most_k_actives_and_never_raises_a_tokens_error(small_k_sparse):
    D, r, start, _, k = small_k_sparse
    dictionary = Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype))
    before = squared_error(D, r, start)
    for n_steps in (1, 5, 30):
        z = iht(dictionary, r, start, k, n_steps)
        assert bool(((z > 0).sum(-1) <= k).all()) and bool((z >= 0).all())
        assert bool((squared_error(D, r, z) <= before + 1e-12).all())


def test_nn_omp_picks_at_most_k_atoms_with_nonnegative_codes(small_k_sparse):
    D, r, _, optimum, k = small_k_sparse
    z = nn_omp(Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype)), r, k)
    assert bool(((z > 0).sum(-1) <= k).all()) and bool((z >= 0).all())
    assert bool((squared_error(D, r, z) >= optimum - 1e-9).all())


def _nnls_error(D: np.ndarray, support: list[int], target: np.ndarray) -> float:
    """½‖target − c·D_S‖² at scipy's NNLS fit on the atoms ``support`` of D [d_sae, d_in]."""
    if not support:
        return 0.5 * float(target @ target)
    _, residual = nnls(D[support].T, target)
    return 0.5 * residual**2


def test_best_swaps_ends_where_no_single_swap_or_addition_helps():
    """best_swaps (closed-form move gains from G_S⁻¹, exact NNLS on the tried moves) against every single
    move enumerated and refitted by scipy's NNLS: none improves the final codes of any token."""
    from sae_bench_amortization.inference.k_sparse_search import best_swaps, nnls_on_mask

    D, r = planted(60, 16, 10, 3, seed=5)
    k = 4  # one more than planted: additions are moves too
    G, beta = (D @ D.T).expand(len(r), -1, -1).contiguous(), r @ D.T
    half_rr = 0.5 * (r * r).sum(-1)
    usable = torch.ones_like(beta, dtype=torch.bool)
    start = nnls_on_mask(G, beta, keep_k_nonnegative(beta, 2) > 0, k)  # a weak 2-atom start
    c = best_swaps(G, beta, start, usable, k, half_rr, max_trials=10**6, max_moves=10**6)
    assert bool(((c > 0).sum(-1) <= k).all()) and bool((c >= 0).all())
    moved = 0
    for token in range(len(r)):
        target, support = r[token].numpy(), torch.nonzero(c[token] > 0).flatten().tolist()
        error = _nnls_error(D.numpy(), support, target)
        assert error == pytest.approx(
            float(squared_error(D, r[token : token + 1], c[token : token + 1]))
        )
        moved += (
            error < float(squared_error(D, r[token : token + 1], start[token : token + 1])) - 1e-9
        )
        outside = [q for q in range(D.shape[0]) if q not in support]
        trials = [[*support, q] for q in outside] if len(support) < k else []
        trials += [[j for j in support if j != p] + [q] for p in support for q in outside]
        best_move = min(_nnls_error(D.numpy(), trial, target) for trial in trials)
        assert best_move >= error * (1 - 1e-9), (token, best_move, error)
    assert moved >= 20  # the search did move most tokens


def test_nn_omp_is_greedy_nonnegative_pursuit_as_written_plainly():
    """omp_on_gram against NN-OMP written per token with numpy least squares: the same picks and codes."""
    from sae_bench_amortization.inference.k_sparse_search import omp_on_gram

    D, r = planted(40, 20, 12, 3, seed=7)
    k = 4
    G, beta = (D @ D.T).expand(len(r), -1, -1).contiguous(), r @ D.T
    c = omp_on_gram(G, beta, torch.ones_like(beta, dtype=torch.bool), k)
    A, norms = D.numpy(), D.norm(dim=1).numpy()
    for token in range(len(r)):
        target, picks = r[token].numpy(), []
        codes = np.zeros(D.shape[0])
        for _ in range(k):
            score = (A @ (target - codes @ A)) / norms
            score[picks] = -np.inf
            if score.max() <= 0:
                break
            picks.append(int(score.argmax()))
            fit, *_ = np.linalg.lstsq(A[picks].T, target, rcond=None)
            codes = np.zeros(D.shape[0])
            codes[picks] = np.clip(fit, 0, None)
        np.testing.assert_allclose(c[token].numpy(), codes, rtol=1e-8, atol=1e-10)


def test_iht_is_normalized_hard_thresholding_as_written_plainly(small_k_sparse):
    """iht (codes kept as their k entries, candidates among the support and the 2k most negative gradient
    entries) against the dense step written per token: z ← P_k(z − μ∇), μ = ‖∇_S‖²/‖∇_S·D_S‖², halved
    until the error does not rise."""
    D, r, start, _, k = small_k_sparse
    z = iht(Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype)), r, start, k, 4)
    A = D.numpy()

    def error(codes, target):
        return 0.5 * float(np.sum((target - codes @ A) ** 2))

    for token in range(0, len(r), 25):
        target, codes = r[token].numpy(), keep_k_nonnegative(start[token : token + 1], k)[0].numpy()
        for _ in range(4):
            gradient = (codes @ A - target) @ A.T
            direction = (
                np.where(codes > 0, gradient, 0) if (codes > 0).any() else np.minimum(gradient, 0)
            )
            step = (direction @ direction) / max(float(np.sum((direction @ A) ** 2)), 1e-30)
            for _ in range(8):
                trial = keep_k_nonnegative(torch.as_tensor(codes - step * gradient)[None], k)[
                    0
                ].numpy()
                if error(trial, target) <= error(codes, target):
                    codes = trial
                    break
                step /= 2
        np.testing.assert_allclose(z[token].numpy(), codes, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------- through ISTARefinedSAE (SAE-Lens SAEs)


def standard_sae_with_uneven_rows(d_in: int = 8, d_sae: int = 16, seed: int = 0):
    """A StandardSAE whose decoder rows have norms 0.1–1.5 (as trained L1 SAEs have), b_dec ≠ 0."""
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    generator = torch.Generator().manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        W = torch.randn(d_sae, d_in, generator=generator)
        W = (
            W
            / W.norm(dim=1, keepdim=True)
            * (0.1 + 1.4 * torch.rand(d_sae, 1, generator=generator))
        )
        sae.W_dec.copy_(W)
        sae.W_enc.copy_(W.T)
        sae.b_dec.copy_(0.1 * torch.randn(d_in, generator=generator))
        sae.b_enc.fill_(-0.2)
    x = torch.randn(200, d_in, generator=generator) + sae.b_dec
    return sae, x


def test_refined_sae_solves_the_decoder_norm_problem_as_sklearn_does():
    from sae_bench_amortization.adapters import ISTARefinedSAE
    from sae_bench_amortization.inference.dictionary import sparse_coding_targets

    sae, x = standard_sae_with_uneven_rows()
    lam = 0.05
    refined = ISTARefinedSAE.from_sae(
        sae, n_steps=None, init="zero", l1_coefficient=lam, objective="l1_decoder_norm", tol=1e-7
    )
    z = refined.encode(x).double()
    D, r = sae.W_dec.detach().double(), sparse_coding_targets(sae, x).detach().double()
    weights = D.norm(dim=1)
    ours = objective_value(D, r, z, lam, weights)
    unit = (D / weights[:, None]).numpy()
    reference = torch.cat([
        objective_value(D, torch.as_tensor(t)[None], (torch.as_tensor(
            Lasso(alpha=lam / D.shape[1], positive=True, fit_intercept=False, tol=1e-12,
                  max_iter=200_000).fit(unit.T, t).coef_) / weights)[None], lam, weights)
        for t in r.numpy()
    ])  # fmt: skip
    assert torch.allclose(ours, reference, rtol=1e-4), float(
        ((ours - reference) / reference).abs().max()
    )
    # plain l1 on the same decoder solves another problem: its codes price short rows out
    plain = ISTARefinedSAE.from_sae(sae, n_steps=None, init="zero", l1_coefficient=lam, tol=1e-7)
    assert not torch.allclose(plain.encode(x), refined.encode(x), atol=1e-3)


def test_refined_sae_calibrates_lambda_under_the_decoder_norm_problem():
    from sae_bench_amortization.adapters import ISTARefinedSAE

    sae, x = standard_sae_with_uneven_rows(seed=1)
    refined = ISTARefinedSAE.from_sae(
        sae, n_steps=None, init="zero", target_l0=3.0, calibration_activations=x,
        objective="l1_decoder_norm",
    )  # fmt: skip
    l0 = float((refined.encode(x) > 0).sum(-1).double().mean())
    assert abs(l0 - 3.0) <= 0.02 * 3.0 + 1e-9
    assert refined.cfg.calibration is not None and refined.cfg.objective == "l1_decoder_norm"


def test_refined_topk_sae_under_k_sparse_keeps_its_k_and_beats_its_encoders_refit(tmp_path):
    from sae_lens import SAE
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    from sae_bench_amortization.adapters import ISTARefinedSAE
    from sae_bench_amortization.inference.dictionary import sparse_coding_targets
    from sae_bench_amortization.inference.nnls import refit_on_support

    torch.manual_seed(3)
    # float64: the searches' products and the independent refit below agree to its rounding (1e-9)
    sae = TopKSAE(TopKSAEConfig(d_in=12, d_sae=48, k=3, dtype="float64"))
    x = torch.randn(300, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="no λ"):
        ISTARefinedSAE.from_sae(sae, n_steps=None, l1_coefficient=0.1, objective="k_sparse")
    exact = ISTARefinedSAE.from_sae(sae, n_steps=None, init="zero", objective="k_sparse")
    steps = ISTARefinedSAE.from_sae(sae, n_steps=5, objective="k_sparse")
    assert exact.cfg.k == 3 and steps.cfg.k == 3  # the SAE's own k
    D, r = sae.W_dec.detach(), sparse_coding_targets(sae, x).detach()
    encoder = sae.encode(x).detach()
    refit = squared_error(D, r, refit_on_support(D, r, encoder))
    for refined in (exact, steps):
        z = refined.encode(x).detach()
        assert bool(((z > 0).sum(-1) <= 3).all()) and bool((z >= 0).all())
        assert bool((squared_error(D, r, z) <= squared_error(D, r, encoder) + 1e-9).all())
    assert bool((squared_error(D, r, exact.encode(x).detach()) <= refit + 1e-9).all())
    exact.save_model(tmp_path / "exact")
    loaded = SAE.load_from_disk(str(tmp_path / "exact"))
    assert (loaded.cfg.objective, loaded.cfg.k) == ("k_sparse", 3)
    torch.testing.assert_close(loaded.encode(x), exact.encode(x))


def test_k_sparse_k_of_an_sae_without_one_is_its_encoders_mean_l0_rounded():
    from sae_bench_amortization.adapters import ISTARefinedSAE

    sae, x = standard_sae_with_uneven_rows(seed=2)
    mean_l0 = float((sae.encode(x) > 0).sum(-1).double().mean())
    refined = ISTARefinedSAE.from_sae(
        sae, n_steps=None, objective="k_sparse", calibration_activations=x
    )
    assert refined.cfg.k == max(1, round(mean_l0))
    with pytest.raises(ValueError, match="needs k or calibration_activations"):
        ISTARefinedSAE.from_sae(sae, n_steps=None, objective="k_sparse")


# ------------------------------------------------------------------------------ through saebench run


@pytest.fixture(scope="module")
def saved_saes(tmp_path_factory):
    """(folder, activation file): a TopK SAE (d_in 12, d_sae 48, k 3) and a standard SAE with uneven
    decoder rows (d_in 8 → a second file), saved; 600 tokens each."""
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    from conftest import write_activations

    folder = tmp_path_factory.mktemp("objective_saes")
    torch.manual_seed(4)
    topk = TopKSAE(TopKSAEConfig(d_in=12, d_sae=48, k=3))
    topk.save_model(folder / "topk")
    write_activations(folder / "topk.safetensors", torch.randn(600, 12))
    standard, x = standard_sae_with_uneven_rows(seed=5)
    standard.save_model(folder / "standard")
    write_activations(folder / "standard.safetensors", torch.cat([x, x, x]))
    return folder


def gap_run(cli, folder, name, out, *extra):
    args = ["run", "--eval", "amortization_gap", "--sae-path", folder / name, "--activations",
            folder / f"{name}.safetensors", "--output-dir", out, "--device", "cpu", *extra]  # fmt: skip
    return cli(*[str(a) for a in args])


def test_run_under_k_sparse_keeps_every_mode_at_k_with_no_lambda(saved_saes, tmp_path, cli):
    from conftest import read_result

    result = gap_run(cli, saved_saes, "topk", tmp_path / "out")  # no --objective: auto
    assert result.code == 0, result.err
    data = read_result(tmp_path / "out", "amortization_gap")
    config = data["eval_config"]
    assert (config["objective"], config["k_sparse_k"]) == ("k_sparse", 3)  # auto: TopK → k_sparse
    assert config["l1_coefficient"] is None and config["lambda_calibration"] is None
    rows = {row["mode"]: row for row in data["eval_result_details"]}
    assert set(rows) >= {"amortized", "non_amortized"}
    for row in rows.values():
        assert row["l0"] <= 3 + 1e-9 and row["l1_coefficient"] is None
    # no penalty: the objective is the squared error, and non_amortized never loses to the encoder
    metrics = data["eval_result_metrics"]["amortization"]
    assert metrics["l1_coefficient"] is None and metrics["mean_gap"] >= 0
    assert data["fingerprint"]["inference"]["objective"] == "auto"
    assert "k 3" in result.out


def test_the_paper_protocol_keeps_l1_unless_an_objective_is_given(saved_saes, tmp_path, cli):
    from sae_bench_amortization.modes import run_objective

    from conftest import read_result

    assert run_objective(None, "default") == "auto" and run_objective(None, None) == "auto"
    assert run_objective(None, "paper") == "l1" and run_objective("k_sparse", "paper") == "k_sparse"
    result = gap_run(cli, saved_saes, "topk", tmp_path / "out", "--protocol", "paper",
                     "--inference", "amortized", "--n-tokens", "300")  # fmt: skip
    assert result.code == 0, result.err
    config = read_result(tmp_path / "out", "amortization_gap")["eval_config"]
    assert config["objective"] == "l1" and config["l1_coefficient"] is not None


def test_regress_refuses_results_of_another_objective_than_its_baselines(saved_saes, tmp_path, cli):
    """A baseline records the problem its modes solved; results of another are one line, exit 2."""
    small = ("--inference", "amortized", "--n-tokens", "300")
    for objective in ("l1", "k_sparse"):
        run = gap_run(
            cli, saved_saes, "topk", tmp_path / objective, "--objective", objective, *small
        )
        assert run.code == 0, run.err
    baseline = tmp_path / "baseline.json"
    assert cli("regress", "--results", tmp_path / "l1", "--write-baseline", baseline).code == 0
    assert json.loads(baseline.read_text())["objectives"] == {
        "local_topk": {"amortization_gap": "l1"}
    }
    mixed = cli("regress", "--results", tmp_path / "k_sparse", "--baseline", baseline)
    assert mixed.code == 2 and len(mixed.err.strip().splitlines()) == 1
    assert "solved the k_sparse problem" in mixed.err and "the l1 problem" in mixed.err
    assert cli("regress", "--results", tmp_path / "l1", "--baseline", baseline).code == 0


def test_a_baseline_of_per_mode_results_accepts_its_own_results(saved_saes, tmp_path, cli):
    """dead_dense writes one file per mode; the encoder's records only a default objective (it solves no
    problem): the baseline takes the problem from the per-sample modes, and the same results pass against
    it (they were refused, the encoder's 'l1' against the modes' 'k_sparse')."""
    args = ["run", "--eval", "dead_dense", "--sae-path", saved_saes / "topk", "--activations",
            saved_saes / "topk.safetensors", "--output-dir", tmp_path / "out", "--inference", "amortized",
            "--inference", "semi:2"]  # fmt: skip
    assert cli(*args).code == 0
    baseline = tmp_path / "baseline.json"
    assert cli("regress", "--results", tmp_path / "out", "--write-baseline", baseline).code == 0
    assert json.loads(baseline.read_text())["objectives"] == {
        "local_topk": {"dead_dense": "k_sparse"}
    }
    again = cli("regress", "--results", tmp_path / "out", "--baseline", baseline)
    assert again.code == 0, again.err


def test_run_under_l1_decoder_norm_calibrates_and_records_it(saved_saes, tmp_path, cli):
    from conftest import read_result

    result = gap_run(cli, saved_saes, "standard", tmp_path / "out", "--objective", "auto")
    assert result.code == 0, result.err
    data = read_result(tmp_path / "out", "amortization_gap")
    assert data["eval_config"]["objective"] == "l1_decoder_norm"  # auto: standard → l1_decoder_norm
    rows = {row["mode"]: row for row in data["eval_result_details"]}
    calibration = data["eval_config"]["lambda_calibration"]
    assert (
        abs(calibration["achieved_l0"] - calibration["target_l0"])
        <= 0.02 * calibration["target_l0"]
    )
    plain = gap_run(cli, saved_saes, "standard", tmp_path / "plain", "--objective", "l1")
    assert plain.code == 0, plain.err
    plain_data = read_result(tmp_path / "plain", "amortization_gap")
    assert plain_data["eval_config"]["objective"] == "l1"
    assert (
        "objective" not in plain_data["fingerprint"]["inference"]
    )  # as before --objective existed
    plain_rows = {row["mode"]: row for row in plain_data["eval_result_details"]}
    # the two problems differ on this decoder (row norms 0.1-1.5): different λ and codes
    assert plain_data["eval_config"]["l1_coefficient"] != data["eval_config"]["l1_coefficient"]
    assert plain_rows["non_amortized"]["nmse"] != rows["non_amortized"]["nmse"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--objective", "k_sparse", "--l1-coefficient", "0.1"], "has no λ"),
        (["--objective", "k_sparse", "--lambda-calibration", "per_mode"], "has no λ"),
        (["--objective", "auto", "--l1-coefficient", "0.1"], "has no λ"),
        (["--objective", "l0"], "--objective"),
    ],
)
def test_an_objective_that_cannot_apply_is_one_line_and_writes_nothing(
    saved_saes, tmp_path, cli, extra, message
):
    result = gap_run(cli, saved_saes, "topk", tmp_path / "out", *extra)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert message in result.err
    assert not list(tmp_path.rglob("*.json"))


def test_k_above_d_sae_is_refused(saved_saes, tmp_path):
    import sae_bench_amortization as sba
    from sae_bench_amortization.errors import InputError
    from sae_bench_amortization.modes import InferenceSettings, parse_modes
    from sae_bench_amortization.sources.saes import spec_from_path

    settings = InferenceSettings(modes=parse_modes(["non_amortized"]), objective="k_sparse", k=49)
    with pytest.raises(InputError, match="above its d_sae 48"):
        sba.run(
            evals=["dead_dense"], saes=[spec_from_path(saved_saes / "topk", "topk")],
            source=sba.SourceSettings(activations=str(saved_saes / "topk.safetensors")),
            inference=settings, output_dir=tmp_path / "out", device="cpu",
        )  # fmt: skip
    assert not list(tmp_path.rglob("*.json"))


def test_the_gap_splits_into_coefficients_and_supports_that_add_up(saved_saes, tmp_path, cli):
    """Per row: coefficient_gap + support_gap = objective − objective(non_amortized); under k_sparse the
    encoder's coefficient gap is its error minus scipy's NNLS on each token's own support."""
    from sae_lens import SAE
    from safetensors.torch import load_file

    from sae_bench_amortization.inference.dictionary import sparse_coding_targets

    from conftest import read_result

    for objective, name in (
        ("k_sparse", "topk"),
        ("l1_decoder_norm", "standard"),
        ("l1", "standard"),
    ):
        out = tmp_path / objective
        result = gap_run(cli, saved_saes, name, out, "--objective", objective)
        assert result.code == 0, result.err
        data = read_result(out, "amortization_gap")
        rows = {row["mode"]: row for row in data["eval_result_details"]}
        optimum = rows["non_amortized"]["objective"]
        for row in rows.values():
            split = row["coefficient_gap"] + row["support_gap"]
            assert split == pytest.approx(row["objective"] - optimum, rel=1e-9, abs=1e-12)
            assert row["coefficient_gap"] >= -1e-6 * abs(
                row["objective"]
            )  # never worse than the codes
        metrics = data["eval_result_metrics"]["amortization"]
        assert metrics["coefficient_gap"] + metrics["support_gap"] == pytest.approx(
            metrics["mean_gap"], rel=1e-9, abs=1e-12
        )
        if objective != "k_sparse":
            continue
        sae = SAE.load_from_disk(str(saved_saes / name))
        x = load_file(str(saved_saes / f"{name}.safetensors"))["activations"]
        with torch.no_grad():
            codes, r = sae.encode(x).double(), sparse_coding_targets(sae, x).double()
        A = sae.W_dec.detach().double().numpy()
        errors = []
        for target, z in zip(r.numpy(), codes.numpy(), strict=True):
            support = np.flatnonzero(z > 0)
            _, residual = (
                nnls(A[support].T, target) if support.size else (None, np.linalg.norm(target))
            )
            errors.append(0.5 * residual**2)
        expected = rows["amortized"]["objective"] - float(np.mean(errors))
        assert rows["amortized"]["coefficient_gap"] == pytest.approx(expected, rel=1e-5)


def test_objectives_benchmark_pairs_cells_and_gives_scipys_t_interval(monkeypatch):
    """benchmarks/bench_objectives.py's summary: per mode, the difference to the first objective is paired
    cell by cell over the cells where both define the metric (n shown), with scipy's 95% t-interval."""
    import sys
    from pathlib import Path

    import pandas as pd
    from scipy import stats

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    sys.modules.pop("bench_objectives", None)
    import bench_objectives

    dead = {"l1": [0.10, 0.20, 0.40, 0.30], "l1_decoder_norm": [0.0, 0.05, 0.10, None]}
    rows = [
        {"d_sae": 8, "sparsity": s, "seed": 0, "objective": o, "mode": "non_amortized",
         "dead_rate": dead[o][i], "f1": 0.5, "recall": 0.9, "nmse": 0.2, "l0": 3.0, "lambda": 0.1}
        for o in dead for i, s in enumerate((0.1, 0.2, 0.3, 0.4))
    ]  # fmt: skip
    text = bench_objectives.summary_markdown(pd.DataFrame(rows))
    differences = pd.Series(
        [-0.10, -0.15, -0.30]
    )  # the fourth cell has no value under one objective
    low, high = stats.t.interval(
        0.95, 2, loc=differences.mean(), scale=stats.sem(differences.to_numpy())
    )
    expected = f"{differences.mean():+.3f} [{low:+.3f}, {high:+.3f}] (n 3)"
    (line,) = [row for row in text.splitlines() if row.startswith("| non_amortized |")]
    assert line.split(" | ")[1] == expected, line
    assert "| `l1` | non_amortized | 4 | 0.250 |" in text
