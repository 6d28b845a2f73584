"""The three sparse-coding problems, checked against independent solvers: sklearn's non-negative lasso for
``l1_decoder_norm``, every support enumerated with scipy's NNLS for ``k_sparse``."""

from __future__ import annotations

import itertools

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
