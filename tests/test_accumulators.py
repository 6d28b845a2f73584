"""The accumulator interface (a batch step in, a typed result out) on hand-built cases whose values are
derived here with numpy, and amortization_gap's rows (default and paper protocol) equal to what each
accumulator gives on the same steps."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from sae_bench_amortization.activations.base import ActivationBatch
from sae_bench_amortization.metrics.accumulator import Step, encode_stream
from sae_bench_amortization.metrics.concepts import (
    AbsorptionSettings,
    ConceptProbes,
    SplittingAccumulator,
    SplittingSettings,
)
from sae_bench_amortization.metrics.firing import Firing
from sae_bench_amortization.metrics.objective import Objective, Timing
from sae_bench_amortization.metrics.paper import PaperProtocol, PaperProtocolAccumulator
from sae_bench_amortization.metrics.reconstruction import Reconstruction
from sae_bench_amortization.metrics.refit import RefitReconstruction

# four atoms in R³: three orthonormal, one on the diagonal of the first two
D = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [2**-0.5, 2**-0.5, 0]], dtype=torch.float64)
X = torch.tensor(
    [[1.0, 0.5, 0], [0, 2, 1], [0.5, 0, 0.5], [1.5, -1, 0], [0, 0, 0.2], [-1, 3, 0]],
    dtype=torch.float64,
)
Z = torch.tensor(  # one latent per token (none on token 4); latent 3 never fires
    [[1.0, 0, 0, 0], [0, 2, 0, 0], [0, 0, 0.5, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 3, 0, 0]],
    dtype=torch.float64,
)
LAM = 0.1


def steps(chunk: int = 4) -> list[Step]:
    """The hand-built tokens in chunks; targets = x (no decoder bias), x̂ = z·D."""
    return [
        Step(
            x=X[s : s + chunk],
            codes=Z[s : s + chunk],
            x_hat=Z[s : s + chunk] @ D,
            targets=X[s : s + chunk],
            dictionary=D,
            lam=LAM,
            seconds=0.5,
        )
        for s in range(0, len(X), chunk)
    ]


def fed(accumulator, chunk: int = 4):
    for step in steps(chunk):
        accumulator.update(step)
    return accumulator.result()


def test_firing_counts_and_rates_by_hand():
    result = fed(Firing(4, dense_threshold=0.3))
    assert result.counts.tolist() == [2, 2, 1, 0]
    assert result.frequency.tolist() == pytest.approx([2 / 6, 2 / 6, 1 / 6, 0])
    stats = result.pathologies
    assert stats.dead_rate == 0.25 and stats.alive_fraction == 0.75
    assert stats.dense_rate == 0.5  # latents 0 and 1 fire on 1/3 > 0.3 of the tokens
    assert stats.mean_l0 == pytest.approx(5 / 6) and result.n_tokens == 6


def test_reconstruction_and_objective_by_numpy():
    x, z, d = X.numpy(), Z.numpy(), D.numpy()
    residual = x - z @ d
    nmse = (residual**2).sum() / ((x - x.mean(axis=0)) ** 2).sum()
    paper_nmse = (residual**2).sum(axis=1).mean() / ((x**2).sum(axis=1).mean() + 1e-9)
    reconstruction = fed(Reconstruction())
    assert reconstruction.nmse == pytest.approx(nmse)
    assert reconstruction.nmse_over_mean_norm == pytest.approx(paper_nmse)
    per_token = 0.5 * (residual**2).sum(axis=1) + LAM * z.sum(axis=1)
    objective = fed(Objective(keep_per_token=True))
    assert objective.mean == pytest.approx(per_token.mean())
    assert objective.per_token is not None
    np.testing.assert_allclose(objective.per_token.numpy(), per_token)
    assert fed(Objective()).per_token is None
    assert fed(Timing()).seconds_per_1k_tokens == pytest.approx(
        1000 * 1.0 / 6
    )  # two steps of 0.5 s


def test_refit_on_one_orthonormal_atom_is_the_clipped_projection():
    """Each token's support is one orthonormal atom d_j: the NNLS refit is max(0, ⟨x, d_j⟩)·d_j."""
    x, z, d = X.numpy(), Z.numpy(), D.numpy()
    refit = np.zeros_like(x)
    for t in range(len(x)):
        for j in np.flatnonzero(z[t] > 0):
            refit[t] += max(0.0, x[t] @ d[j]) * d[j]
    expected = ((x - refit) ** 2).sum() / ((x - x.mean(axis=0)) ** 2).sum()
    for budget in (4 * 4, 256 * 2**20):  # one token per group, and the whole chunk at once
        result = fed(RefitReconstruction(lambda codes: codes @ D, 4, token_budget=budget))
        assert result.nmse == pytest.approx(expected)


def test_paper_protocol_result_is_the_protocol_metrics():
    accumulator = PaperProtocolAccumulator(4)
    for step in steps():
        accumulator.update(step.x, step.reconstruction, step.codes)
    result = fed(PaperProtocol(4))
    assert dataclasses.asdict(result) == accumulator.metrics()
    # frequencies 1/3, 1/3, 1/6, 0: three are ≥ 0.1, two ≥ 0.2
    assert result.dense_rate == 0.75 and result.dense_rate_0_2 == 0.5
    assert result.dead_rate == 0.25


def labelled_tokens(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs [n, 6], codes [n, 5], labels [n, 2]): concept 0 holds exactly where latent 0 fires (codes
    ≥ 1 there), concept 1 is independent noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.rand(n, 2, generator=generator) < 0.3
    codes = torch.rand(n, 5, generator=generator) * (torch.rand(n, 5, generator=generator) < 0.4)
    codes[:, 0] = labels[:, 0] * (1 + torch.rand(n, generator=generator))
    inputs = torch.randn(n, 6, generator=generator) + 3 * labels[:, :1].float()
    return inputs, codes, labels


def test_concept_probes_find_the_latent_that_is_the_concept():
    inputs, codes, labels = labelled_tokens()
    decoder = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    probes = ConceptProbes(
        ["c0", "c1"],
        splitting=SplittingSettings(),
        absorption=AbsorptionSettings(decoder),
    )
    reference = SplittingAccumulator(["c0", "c1"], keep_inputs=True)
    for s in range(0, len(codes), 128):
        probes.update(
            Step(x=inputs[s : s + 128], codes=codes[s : s + 128], concepts=labels[s : s + 128])
        )
        reference.update(codes[s : s + 128], labels[s : s + 128], inputs[s : s + 128])
    result = probes.result()
    assert result.splitting is not None and result.absorption is not None
    rows = result.splitting.rows
    assert rows == reference.scores()
    assert rows[0]["top_latents"][0] == 0 and rows[0]["f1_at_1"] == 1.0  # latent 0 is concept 0
    measured = [row["delta_f1"] for row in rows if row["delta_f1"] is not None]
    assert result.splitting.n_concepts == len(measured)
    assert result.splitting.mean_delta_f1 == pytest.approx(sum(measured) / len(measured))
    assert rows[0]["delta_f1"] == pytest.approx(rows[0]["f1_at_2"] - rows[0]["f1_at_1"])
    # latent 0 never misses concept 0's tokens: absorption 0/0 there, with the reason
    assert result.absorption.rows[0]["n_main_silent"] == 0
    assert result.absorption.rows[0]["absorption_rate"] is None
    assert ConceptProbes(["c0", "c1"]).result().splitting is None  # only the parts asked for


def test_splitting_and_absorption_fit_each_k_sparse_probe_once_with_the_same_numbers(monkeypatch):
    """ΔF1's probes at k = 1, 2 and absorption's main-latent search share the sample's fitted probes: each
    (concept, latents) probe is fitted once, and every row equals the rows of separate samples."""
    import sae_bench_amortization.metrics.concepts as concepts

    inputs, codes, labels = labelled_tokens()
    decoder = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))

    def filled() -> SplittingAccumulator:
        tokens = SplittingAccumulator(["c0", "c1"], keep_inputs=True)
        tokens.update(codes, labels, inputs)
        return tokens

    alone_splitting = filled().scores()
    alone_absorption = concepts.absorption_scores(filled(), decoder)
    fitted = []
    original = concepts.k_sparse_f1
    monkeypatch.setattr(
        concepts, "k_sparse_f1", lambda f, y, k, seed=0: fitted.append(k) or original(f, y, k, seed)
    )
    shared = filled()
    assert shared.scores() == alone_splitting
    assert concepts.absorption_scores(shared, decoder) == alone_absorption
    assert len(fitted) == len(shared.probe_f1s)  # no probe fitted twice
    assert (
        sorted(fitted).count(1) == 2 and sorted(fitted).count(2) == 2
    )  # k = 1, 2: once per concept


def test_encode_stream_feeds_every_accumulator_and_the_tap():
    inputs, _, labels = labelled_tokens(n=50)
    W = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    batches = [ActivationBatch(inputs[s : s + 16], labels[s : s + 16]) for s in range(0, 50, 16)]
    told = []
    firing = Firing(5)
    encode_stream(batches, lambda a: torch.relu(a @ W), [firing], lambda c, b: told.append(len(c)))
    assert told == [16, 16, 16, 2]
    expected = (torch.relu(inputs @ W) > 0).sum(dim=0)
    assert firing.result().counts.tolist() == expected.tolist()


def test_a_paper_row_says_why_each_pseudo_label_metric_is_null():
    """Every token of norm 1: y = ‖x‖ > median has one class, so F1@k, ΔF1 and absorption are null, each
    with that reason (ΔF1 and absorption once had none)."""
    from sae_bench_amortization.metrics.gap import NO_LABEL, GapSettings, PaperGapMetrics

    x = torch.eye(3, dtype=torch.float64).repeat(4, 1)
    metrics = PaperGapMetrics(D, lambda codes: codes @ D, GapSettings())
    codes = (x @ D.T).clamp(min=0)
    metrics.update(Step(x, codes, codes @ D, targets=x, dictionary=D, lam=LAM))
    row = metrics.result()
    undefined = row["undefined"]
    assert isinstance(undefined, dict)
    for key in ("f1_at_1", "f1_at_2", "delta_f1", "absorption_rate"):
        assert row[key] is None and undefined[key] == NO_LABEL, key


class MemorySource:
    """Tokens held in memory, with concept labels."""

    def __init__(self, acts: torch.Tensor, concepts: torch.Tensor, names: list[str]):
        self.acts, self.concepts, self.concept_names = acts, concepts, names
        self.d_in = acts.shape[1]

    def describe(self) -> str:
        return "memory"

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        for s in range(0, len(self.acts), batch_size):
            yield ActivationBatch(self.acts[s : s + batch_size], self.concepts[s : s + batch_size])


@pytest.fixture(scope="module")
def small_gap():
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=6, d_sae=5)).eval()
    with torch.no_grad():
        for parameter in (sae.W_enc, sae.W_dec, sae.b_enc):
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    inputs, _, labels = labelled_tokens(n=300)
    return sae, MemorySource(inputs.float(), labels, ["c0", "c1"])


@pytest.mark.parametrize("protocol", ["default", "paper"])
def test_compare_modes_rows_are_the_accumulators_results(small_gap, protocol):
    from sae_bench_amortization.evals.amortization_gap.eval_config import AmortizationGapEvalConfig
    from sae_bench_amortization.evals.amortization_gap.main import compare_modes
    from sae_bench_amortization.inference.dictionary import (
        decode,
        dictionary_of,
        sparse_coding_targets,
    )
    from sae_bench_amortization.modes import InferenceSettings, parse_modes

    sae, source = small_gap
    config = AmortizationGapEvalConfig(modes=["amortized"], protocol=protocol, batch_size=128)
    with torch.no_grad():
        rows = compare_modes(
            sae, source, parse_modes(["amortized"]), LAM, InferenceSettings(), config=config
        )
    (row,) = rows
    assert row["mode"] == "amortized" and row["l1_coefficient"] is None
    # the same steps, each accumulator on its own
    firing, reconstruction, objective = (
        Firing(5, config.dense_threshold),
        Reconstruction(),
        Objective(),
    )
    refit = RefitReconstruction(lambda codes: decode(sae, codes), 5)
    concepts = ConceptProbes(
        ["c0", "c1"],
        max_concepts=config.max_concepts,
        splitting=SplittingSettings(),
        absorption=AbsorptionSettings(sae.W_dec),
    )
    paper = PaperProtocol(5)
    accumulators = [firing, reconstruction, objective, refit, concepts, paper]
    D = dictionary_of(sae).D
    x_all, z_all = [], []
    with torch.no_grad():
        for batch in source.iter_batches(128):
            codes = sae.encode(batch.acts)
            x_hat, targets = decode(sae, codes), sparse_coding_targets(sae, batch.acts)
            step = Step(batch.acts, codes, x_hat, batch.concepts, None, targets, D, LAM)
            for accumulator in accumulators:
                accumulator.update(step)
            x_all.append(targets.double()), z_all.append(codes.double())
    stats = firing.result().pathologies
    assert row["l0"] == stats.mean_l0
    assert row["objective"] == objective.result().mean
    # the objective, independently: ½‖r − z·D‖² + λ‖z‖₁ averaged over tokens (numpy, float64)
    r, z = torch.cat(x_all).numpy(), torch.cat(z_all).numpy()
    by_hand = 0.5 * ((r - z @ D.double().numpy()) ** 2).sum(axis=1) + LAM * z.sum(axis=1)
    assert row["objective"] == pytest.approx(by_hand.mean(), rel=1e-5)
    assert row["explained_variance"] == reconstruction.result().explained_variance
    if protocol == "default":
        assert (row["nmse"], row["dead_rate"], row["dense_rate"]) == (
            reconstruction.result().nmse,
            stats.dead_rate,
            stats.dense_rate,
        )
        assert row["nmse_refit"] == refit.result().nmse
        result = concepts.result()
        assert result.splitting is not None and result.absorption is not None
        assert row["delta_f1"] == result.splitting.mean_delta_f1
        assert row["n_concepts_delta_f1"] == result.splitting.n_concepts
        assert row["absorption_rate"] == result.absorption.absorption_rate
        assert row["full_absorption_rate"] == result.absorption.full_absorption_rate
        assert not {"dense_rate_0_2", "f1_at_1", "f1_at_2", "per_token_objective"} & set(row)
    else:
        assert {k: row[k] for k in dataclasses.asdict(paper.result())} == dataclasses.asdict(
            paper.result()
        )
        assert row["nmse_refit"] == refit.result().nmse_over_mean_norm
        assert row["per_token_objective"].numpy() == pytest.approx(by_hand, rel=1e-5)
        assert row["n_concepts_delta_f1"] is None and row["full_absorption_rate"] is None


def test_concept_probe_f1_is_sklearns_split_fit_and_f1_score():
    """probe_f1 shares one stratified split per label column and counts F1 itself: the same numbers as
    train_test_split + LogisticRegression + f1_score(zero_division=0) on every draw."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    from sae_bench_amortization.metrics.concepts import MIN_PROBE_CLASS, binary_f1, probe_f1

    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(60, 300))
        x = rng.normal(size=(n, 3)) * (trial % 5 != 0)  # every fifth: constant features
        y = rng.random(n) < rng.uniform(0.1, 0.6)
        if min(y.sum(), (~y).sum()) < MIN_PROBE_CLASS:
            assert probe_f1(x, y) is None
            continue
        train_x, test_x, train_y, test_y = train_test_split(
            x, y, test_size=0.2, random_state=trial % 3, stratify=y
        )
        probe = LogisticRegression(max_iter=1000, class_weight="balanced").fit(train_x, train_y)
        expected = float(f1_score(test_y, probe.predict(test_x), zero_division=0.0))  # pyright: ignore[reportArgumentType]
        assert probe_f1(x, y, trial % 3) == expected
        guess = rng.random(n) < rng.uniform(0.0, 0.5)
        assert binary_f1(y, guess) == float(f1_score(y, guess, zero_division=0.0))  # pyright: ignore[reportArgumentType]
