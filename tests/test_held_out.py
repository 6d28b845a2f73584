"""Held-out tokens of one world: ``saebench synth --start-token N`` writes a later span of the same
synthetic world, and ``saebench run --skip-tokens N`` evaluates any activation source after its first N
tokens, recorded in eval_config."""

from __future__ import annotations

import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from safetensors import safe_open

from sae_bench_amortization.activations.file import ActivationFile
from sae_bench_amortization.synthetic.generator import load_truth, truth_path

from conftest import read_result


def tokens(path, n):
    return next(ActivationFile(path).iter_batches(n))


def test_start_token_writes_a_later_span_of_the_same_world(tmp_path, cli):
    whole, tail = tmp_path / "whole.safetensors", tmp_path / "tail.safetensors"
    assert cli("synth", "--out", whole, "--n-tokens", "9000", "--seed", "3").code == 0
    result = cli(
        "synth", "--out", tail, "--n-tokens", "4000", "--start-token", "5000", "--seed", "3"
    )
    assert result.code == 0 and "tokens 5000–9000" in result.out, result.err
    a, b = tokens(whole, 9000), tokens(tail, 4000)
    assert torch.equal(a.acts[5000:], b.acts) and torch.equal(a.concepts[5000:], b.concepts)
    assert torch.equal(
        load_truth(truth_path(whole)).dictionary, load_truth(truth_path(tail)).dictionary
    )
    with safe_open(str(truth_path(tail)), "pt") as handle:
        assert (handle.metadata()["start_token"], handle.metadata()["n_tokens"]) == ("5000", "4000")


def test_skip_tokens_evaluates_the_held_out_span(tmp_path, cli):
    whole, tail = tmp_path / "whole.safetensors", tmp_path / "tail.safetensors"
    refs = tmp_path / "refs"
    assert cli("synth", "--out", whole, "--n-tokens", "9000", "--seed", "3", "--reference-saes", refs).code == 0  # fmt: skip
    assert cli("synth", "--out", tail, "--n-tokens", "4000", "--start-token", "5000", "--seed", "3").code == 0  # fmt: skip
    sae = refs / "oracle"
    runs = {
        "skipped": ("--activations", whole, "--skip-tokens", "5000"),
        "tail": ("--activations", tail),
        "skipped_2000": ("--activations", whole, "--skip-tokens", "5000", "--n-tokens", "2000"),
        "tail_2000": ("--activations", tail, "--n-tokens", "2000"),
    }
    results = {}
    for name, source in runs.items():
        out = tmp_path / name
        done = cli("run", "--eval", "dead_dense", "--eval", "amortization_gap", "--sae-path", sae,
                   *source, "--batch-size", "1000", "--output-dir", out)  # fmt: skip
        assert done.code == 0, done.err
        results[name] = {e: read_result(out, e) for e in ("dead_dense", "amortization_gap")}
    for skipped, plain, n in (("skipped", "tail", 4000), ("skipped_2000", "tail_2000", 2000)):
        for eval_name in ("dead_dense", "amortization_gap"):
            held_out, direct = results[skipped][eval_name], results[plain][eval_name]
            assert held_out["eval_result_metrics"] == direct["eval_result_metrics"], eval_name
            assert held_out["eval_config"]["skip_tokens"] == 5000
            assert direct["eval_config"]["skip_tokens"] == 0
            assert held_out["eval_config"]["n_tokens"] == direct["eval_config"]["n_tokens"] == n
    assert results["skipped"]["dead_dense"]["fingerprint"]["activations"]["skip_tokens"] == 5000
    # the same output folder with another span is refused, naming what changed
    again = cli("run", "--eval", "dead_dense", "--sae-path", sae, "--activations", whole,
                "--skip-tokens", "4000", "--output-dir", tmp_path / "skipped")  # fmt: skip
    assert again.code == 2 and "skip_tokens" in again.err


def test_bad_spans_are_one_line(tmp_path, cli):
    acts = tmp_path / "a.safetensors"
    assert cli("synth", "--out", acts, "--n-tokens", "1000").code == 0
    torch.manual_seed(0)
    StandardSAE(StandardSAEConfig(d_in=128, d_sae=64)).save_model(tmp_path / "sae")
    cases = {
        ("--skip-tokens", "1000"): "skips every token",
        ("--skip-tokens", "-1"): "--skip-tokens must be >= 0",
    }
    for flags, needle in cases.items():
        out = tmp_path / f"out{flags[1]}"
        result = cli.dead_dense(tmp_path / "sae", acts, *flags, "--output-dir", out)
        assert result.code == 2 and needle in result.err, (flags, result.err)
        assert len(result.err.strip().splitlines()) == 1 and not out.exists()
    result = cli(
        "synth", "--out", tmp_path / "b.safetensors", "--n-tokens", "10", "--start-token", "-1"
    )
    assert result.code == 2 and "--start-token must be >= 0" in result.err
    assert not (tmp_path / "b.safetensors").exists()


def test_a_skipped_source_yields_exactly_the_rows_after_the_skip(tmp_path, cli):
    """A file is read from the first kept row on; any other source is read and its first rows dropped:
    both give the file's rows [skip, skip + n) with their concepts, in chunks of at most batch_size."""
    from sae_bench_amortization.activations.sources import SkippedSource, TruncatedSource

    path = tmp_path / "acts.safetensors"
    assert cli("synth", "--out", path, "--n-tokens", "9000").code == 0
    file = ActivationFile(path)
    everything = tokens(path, 9000)
    not_seekable = TruncatedSource(file, file.n_tokens)  # no iter_batches_from: the generic path
    assert not hasattr(not_seekable, "iter_batches_from")
    for source in (file, not_seekable):
        for n_tokens, stop in ((None, 9000), (2500, 7500)):
            batches = list(SkippedSource(source, 5000, n_tokens).iter_batches(3000))
            assert all(batch.acts.shape[0] <= 3000 for batch in batches)
            assert torch.equal(torch.cat([b.acts for b in batches]), everything.acts[5000:stop])
            assert torch.equal(
                torch.cat([b.concepts for b in batches]), everything.concepts[5000:stop]
            )
