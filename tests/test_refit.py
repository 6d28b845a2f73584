"""Refitting each token's codes on its own support: equal to scipy's NNLS on the token's atoms (an
independent solve on the [d_in, |S|] matrix), with negative least-squares solutions, collinear atoms,
empty supports and padding between tokens of different support sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from sae_bench_amortization.metrics.refit import refit_on_support


def _problem(seed: int, d_sae=40, d_in=12, tokens=60, max_size=9):
    generator = torch.Generator().manual_seed(seed)
    D = torch.randn(d_sae, d_in, generator=generator, dtype=torch.float64)
    D[7] = 2.0 * D[3]  # collinear atoms
    D[8] = -D[5]  # opposite atoms: least squares goes negative on supports holding both
    targets = torch.randn(tokens, d_in, generator=generator, dtype=torch.float64)
    codes = torch.rand(tokens, d_sae, generator=generator, dtype=torch.float64)
    sizes = torch.randint(0, max_size, (tokens,), generator=generator)
    keep = torch.rand(tokens, d_sae, generator=generator).argsort(dim=1) < sizes[:, None]
    keep[0] = False  # an empty support
    keep[1, [3, 7, 5, 8]] = True
    return D, targets, codes * keep


def test_refit_equals_scipy_nnls_on_each_tokens_atoms():
    for seed, max_size in ((0, 9), (1, 9), (2, 40)):  # one group; groups by support size
        D, targets, codes = _problem(seed, max_size=max_size)
        refit = refit_on_support(D, targets, codes)
        assert torch.all(refit[codes == 0] == 0) and torch.all(refit >= 0)
        for t in range(codes.shape[0]):
            support = torch.nonzero(codes[t]).flatten().numpy()
            if support.size == 0:
                assert torch.all(refit[t] == 0)
                continue
            A, b = D[support].T.numpy(), targets[t].numpy()
            c, _ = nnls(A, b)
            expected = np.sum((A @ c - b) ** 2)
            found = np.sum((A @ refit[t, support].numpy() - b) ** 2)
            assert found <= expected * (1 + 1e-9) + 1e-12, (seed, t, found, expected)


def test_refit_never_reconstructs_worse_than_the_codes_it_starts_from():
    D, targets, codes = _problem(5)
    refit = refit_on_support(D, targets, codes)
    before = ((targets - codes @ D) ** 2).sum(dim=1)
    after = ((targets - refit @ D) ** 2).sum(dim=1)
    assert torch.all(after <= before + 1e-9)


def test_float32_codes_on_a_wide_support_in_groups():
    generator = torch.Generator().manual_seed(0)
    D = torch.nn.functional.normalize(torch.randn(300, 64, generator=generator), dim=1)
    codes = torch.zeros(500, 300)
    rows = torch.arange(500)[:, None]
    codes[rows, torch.randint(0, 300, (500, 20), generator=generator)] = 1.0
    targets = codes @ D * 1.7  # the support's exact coefficients are 1.7 (repeats add up)
    refit = refit_on_support(D, targets, codes)
    assert refit.dtype == torch.float32
    assert torch.allclose(refit @ D, targets, atol=1e-4)


def test_supports_too_wide_for_a_gram_matrix_are_solved_on_their_atoms(monkeypatch):
    """Above MAX_GRAM_SUPPORT latents (thousands, for semi:T codes on an overcomplete decoder) a token is
    solved on its [K, d_in] atoms: the same optimum as scipy on the token's matrix."""
    import sae_bench_amortization.inference.nnls as refit_module

    monkeypatch.setattr(refit_module, "MAX_GRAM_SUPPORT", 4)
    D, targets, codes = _problem(7, max_size=40)
    assert int((codes > 0).sum(dim=1).max()) > 4
    refit = refit_on_support(D, targets, codes)
    for t in range(codes.shape[0]):
        support = torch.nonzero(codes[t]).flatten().numpy()
        if support.size == 0:
            continue
        A, b = D[support].T.numpy(), targets[t].numpy()
        expected = np.sum((A @ nnls(A, b)[0] - b) ** 2)
        assert np.sum((A @ refit[t, support].numpy() - b) ** 2) <= expected * (1 + 1e-9) + 1e-12


def test_the_lasso_on_each_tokens_support_equals_sklearns_nonnegative_lasso_on_its_atoms():
    """lasso_on_support against sklearn's coordinate descent (positive=True) on the token's atoms,
    objective ½‖r − cD‖² + λΣc compared token by token (collinear and opposite atoms included)."""
    from sklearn.linear_model import Lasso

    from sae_bench_amortization.inference.dictionary import Dictionary
    from sae_bench_amortization.inference.support_fit import lasso_on_support

    lam = 0.3
    for seed, max_size in ((0, 9), (2, 40)):
        D, targets, codes = _problem(seed, max_size=max_size)
        best = lasso_on_support(Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype)), targets,
                                codes, lam)  # fmt: skip
        assert torch.all(best[codes == 0] == 0) and torch.all(best >= 0)
        for t in range(codes.shape[0]):
            support = torch.nonzero(codes[t]).flatten().numpy()
            if support.size == 0:
                continue
            A, b = D[support].T.numpy(), targets[t].numpy()
            sk = Lasso(alpha=lam / len(b), fit_intercept=False, positive=True, tol=1e-12,
                       max_iter=100_000).fit(A, b)  # fmt: skip

            def objective(c, A=A, b=b):
                return 0.5 * np.sum((A @ c - b) ** 2) + lam * np.sum(c)

            found, expected = objective(best[t, support].numpy()), objective(sk.coef_)
            assert found <= expected + 1e-9 * max(1.0, abs(expected)), (seed, t, found, expected)


def test_the_active_set_search_reaches_the_optimum_found_by_trying_every_support():
    """nonneg_quadratic on positive-definite problems (K = 6): every token passes its optimality check,
    and its value equals the best over all 64 free sets of the unconstrained solutions that are ≥ 0."""
    import itertools

    from sae_bench_amortization.inference.nnls import nonneg_quadratic

    generator = torch.Generator().manual_seed(3)
    n, K = 200, 6
    A = torch.randn(n, K, 9, generator=generator, dtype=torch.float64)
    G = A @ A.transpose(1, 2)
    b = torch.randn(n, K, generator=generator, dtype=torch.float64) * 3
    valid = torch.ones(n, K, dtype=torch.bool)
    valid[:20, 4:] = False  # padded coordinates stay at 0
    c, solved = nonneg_quadratic(G, b, valid)
    assert bool(solved.all())
    assert torch.all(c[~valid] == 0) and torch.all(c >= 0)
    for t in range(n):
        keep = valid[t].nonzero().flatten().tolist()
        best = 0.0  # c = 0
        for size in range(1, len(keep) + 1):
            for subset in itertools.combinations(keep, size):
                s = list(subset)
                x = torch.linalg.solve(G[t][s][:, s], b[t, s])
                if bool((x >= 0).all()):
                    best = min(best, float(0.5 * x @ G[t][s][:, s] @ x - b[t, s] @ x))
        value = float(0.5 * c[t] @ G[t] @ c[t] - b[t] @ c[t])
        assert value == pytest.approx(best, rel=1e-9, abs=1e-12), t
