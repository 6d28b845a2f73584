"""Inference on a fixed decoder: sklearn as the oracle for non-amortized codes, ISTA's monotone objective,
semi:0 = the SAE's own encode, λ calibration within 2%."""

from __future__ import annotations

import pytest
import torch
from sae_lens.saes.gated_sae import GatedSAE, GatedSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from sklearn.decomposition import sparse_encode

from sae_bench_amortization.adapters import ISTARefinedSAE
from sae_bench_amortization.inference.calibration import calibrate_lambda
from sae_bench_amortization.inference.dictionary import (
    Dictionary,
    dictionary_of,
    sparse_coding_targets,
)
from sae_bench_amortization.inference.solver import ista, mean_l0, objective, solve


def random_problem(seed: int, d_in: int = 24, d_sae: int = 96, n: int = 64, density: float = 0.05):
    generator = torch.Generator().manual_seed(seed)
    D = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=generator), dim=1)
    D = D * (0.5 + torch.rand(d_sae, 1, generator=generator))  # unequal row norms
    codes = (
        (torch.rand(n, d_sae, generator=generator) < density)
        * torch.rand(n, d_sae, generator=generator)
        * 3
    )
    x = codes @ D + 0.05 * torch.randn(n, d_in, generator=generator)
    return D.double(), x.double()


def sklearn_codes(D: torch.Tensor, r: torch.Tensor, lam: float) -> torch.Tensor:
    z = sparse_encode(
        r.numpy(), D.numpy(), algorithm="lasso_cd", alpha=lam, positive=True, max_iter=100_000
    )
    return torch.from_numpy(z)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lam", [0.05, 0.3])
def test_non_amortized_matches_sklearn_lasso(seed, lam):
    D, r = random_problem(seed)
    reference = float(objective(D, r, sklearn_codes(D, r, lam), lam).sum())
    ours = float(
        objective(
            D, r, solve(Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype)), r, lam), lam
        ).sum()
    )
    assert ours <= reference * (1 + 1e-4), (ours, reference)


def test_working_set_grows_past_its_first_size():
    """Supports larger than the first working set (64 atoms) still reach sklearn's objective."""
    D, r = random_problem(7, d_in=128, d_sae=384, n=16, density=0.25)
    lam = 0.05
    reference = float(objective(D, r, sklearn_codes(D, r, lam), lam).sum())
    z = solve(Dictionary(D, torch.zeros(128, dtype=D.dtype)), r, lam)
    assert float((z > 0).sum(-1).max()) > 64
    assert float(objective(D, r, z, lam).sum()) <= reference * (1 + 1e-4)


def test_ista_objective_never_increases():
    D, r = random_problem(1)
    dictionary = Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype))
    z = torch.zeros(r.shape[0], D.shape[0], dtype=D.dtype)
    values = [objective(D, r, z, 0.1)]
    for _ in range(60):
        z = ista(dictionary, r, 0.1, z0=z, n_steps=1, method="ista")
        values.append(objective(D, r, z, 0.1))
    values = torch.stack(values)  # [steps, tokens]: per token, not only the sum
    assert (values[1:] <= values[:-1] + 1e-12).all()
    assert values[-1].sum() < 0.5 * values[0].sum()


def test_fista_reaches_the_same_optimum():
    D, r = random_problem(2)
    dictionary = Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype))
    reference = float(objective(D, r, sklearn_codes(D, r, 0.2), 0.2).sum())
    z = ista(dictionary, r, 0.2, n_steps=3000, method="fista", tol=1e-12)
    assert float(objective(D, r, z, 0.2).sum()) <= reference * (1 + 1e-4)


def make_sae(architecture: str, d_in: int = 16, d_sae: int = 64, seed: int = 0, **cfg):
    torch.manual_seed(seed)
    classes = {
        "standard": (StandardSAE, StandardSAEConfig),
        "topk": (TopKSAE, TopKSAEConfig),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig),
        "gated": (GatedSAE, GatedSAEConfig),
    }
    sae_class, cfg_class = classes[architecture]
    if architecture == "topk":
        cfg.setdefault("k", 6)
    sae = sae_class(cfg_class(d_in=d_in, d_sae=d_sae, **cfg))
    with torch.no_grad():
        for name, parameter in sae.named_parameters():
            if name == "threshold":
                parameter.uniform_(0.0, 0.3)
            elif name.startswith("b_"):
                parameter.normal_(0, 0.2)
            else:
                parameter.normal_(0, 0.3)
    return sae


ARCHITECTURES = ["standard", "topk", "jumprelu", "gated"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_semi_zero_is_the_sae_encode_exactly(architecture):
    sae = make_sae(architecture)
    x = torch.randn(50, 16)
    refined = ISTARefinedSAE.from_sae(sae, n_steps=0, l1_coefficient=0.1)
    assert torch.equal(refined.encode(x), sae.encode(x))
    torch.testing.assert_close(refined.decode(refined.encode(x)), sae.decode(sae.encode(x)))


@pytest.mark.parametrize(
    "architecture, cfg",
    [
        ("standard", {}),
        ("topk", {"rescale_acts_by_decoder_norm": True}),
        ("jumprelu", {"apply_b_dec_to_input": False}),
        ("gated", {}),
        ("standard", {"normalize_activations": "constant_norm_rescale"}),
    ],
)
def test_non_amortized_sae_codes_match_sklearn_on_its_own_inputs(architecture, cfg):
    """The targets are the SAE's processed input minus b_dec; D is its decoder in its own code units."""
    sae = make_sae(architecture, **cfg)
    x = torch.randn(40, 16) * 2
    refined = ISTARefinedSAE.from_sae(sae, n_steps=None, init="zero", l1_coefficient=0.2)
    z = refined.encode(x).double()
    # independent construction of the problem
    W_dec = sae.W_dec.detach().double()
    if cfg.get("rescale_acts_by_decoder_norm"):
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
    x_in = x.double()
    if cfg.get("normalize_activations") == "constant_norm_rescale":
        x_in = x_in * (16**0.5) / x_in.norm(dim=-1, keepdim=True)
    r = x_in - sae.b_dec.detach().double()
    reference = objective(W_dec, r, sklearn_codes(W_dec, r, 0.2), 0.2).sum()
    assert float(objective(W_dec, r, z, 0.2).sum()) <= float(reference) * (1 + 1e-4)
    # and decode is the SAE's own decoder (SAE-Lens keeps run-time normalization stats from the last encode)
    refined_out = refined.decode(z.float())
    sae.encode(x)
    torch.testing.assert_close(refined_out, sae.decode(z.float()))


def test_keep_top_k_option():
    sae = make_sae("topk")
    refined = ISTARefinedSAE.from_sae(sae, n_steps=10, l1_coefficient=0.01, keep_top_k=True)
    assert ((refined.encode(torch.randn(80, 16)) > 0).sum(-1) <= 6).all()
    with pytest.raises(ValueError, match="TopK base"):
        ISTARefinedSAE.from_sae(make_sae("standard"), l1_coefficient=0.1, keep_top_k=True)


def test_exactly_one_of_lambda_and_target():
    sae = make_sae("standard")
    with pytest.raises(ValueError, match="exactly one"):
        ISTARefinedSAE.from_sae(sae)
    with pytest.raises(ValueError, match="exactly one"):
        ISTARefinedSAE.from_sae(sae, l1_coefficient=0.1, target_l0=3)


@pytest.mark.parametrize("target", [3.0, 10.0])
def test_calibration_hits_target_l0_within_two_percent(target):
    D, r = random_problem(3, n=400)
    dictionary = Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype))
    calibration = calibrate_lambda(dictionary, r, target)
    z = solve(dictionary, r, calibration.l1_coefficient)
    assert abs(mean_l0(z) - target) <= 0.02 * target  # re-measured independently of the calibration
    assert calibration.relative_error <= 0.02


def test_from_sae_calibrates_to_encoder_l0():
    sae = make_sae("topk", d_in=16, d_sae=64)
    x = torch.randn(500, 16)
    refined = ISTARefinedSAE.from_sae(
        sae, n_steps=None, init="zero", target_l0="encoder", calibration_activations=x
    )
    assert abs(float((refined.encode(x) > 0).sum(-1).double().mean()) - 6.0) <= 0.12
    assert refined.cfg.calibration["target_l0"] == 6.0


def test_dictionary_cache_follows_decoder_changes():
    sae = make_sae("standard")
    first = dictionary_of(sae)
    assert dictionary_of(sae) is first
    first_lipschitz = first.lipschitz
    with torch.no_grad():
        sae.W_dec.mul_(2)
    second = dictionary_of(sae)
    assert second is not first
    assert second.lipschitz == pytest.approx(4 * first_lipschitz, rel=1e-5)
    exact = float(torch.linalg.matrix_norm(sae.W_dec.detach().double(), 2) ** 2)
    assert second.lipschitz == pytest.approx(exact, rel=1e-4) and second.lipschitz >= exact
    sae.W_dec.data.mul_(0.5)  # through .data: autograd's version counter does not move
    assert dictionary_of(sae).lipschitz == pytest.approx(first_lipschitz, rel=1e-5)
    sae.fold_activation_norm_scaling_factor(2.0)  # SAE-Lens writes W_dec.data /= 2
    assert dictionary_of(sae).lipschitz == pytest.approx(first_lipschitz / 4, rel=1e-5)


def test_targets_follow_the_sae_input_processing():
    x = torch.randn(5, 16)
    for cfg in ({"apply_b_dec_to_input": False}, {"apply_b_dec_to_input": True}):
        sae = make_sae("jumprelu", **cfg)
        torch.testing.assert_close(sparse_coding_targets(sae, x), x - sae.b_dec)


@pytest.mark.parametrize("method", ["ista", "fista"])
def test_steps_leave_the_start_untouched_and_match_a_plain_loop(method):
    D, r = random_problem(5)
    dictionary = Dictionary(D, torch.zeros(D.shape[1], dtype=D.dtype))
    start = torch.relu(r @ D.T - 0.5)
    before = start.clone()
    z = ista(dictionary, r, 0.1, z0=start, n_steps=4, method=method)
    assert torch.equal(start, before)
    if method == "ista":  # the textbook update, written out
        expected, step = before, 1 / dictionary.lipschitz
        for _ in range(4):
            expected = torch.clamp(expected - step * ((expected @ D - r) @ D.T + 0.1), min=0)
        torch.testing.assert_close(z, expected)
