# ruff: noqa: F811 - the session fixture hf_cache is imported from test_air_gapped and used by name
"""Every shell command of the README runs (``tests/readme_commands.py``: the extraction, the substitution
table, the exceptions), and ``saebench reproduce`` runs every target end to end at ``--scale smoke``
offline against the test Hugging Face cache: the README's own reproduce commands are those runs.

All commands run in one fresh offline process (``tests/run_commands.py``: the hub libraries read
``HF_HOME`` when imported, and one process pays the imports once), in a folder of their own."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from readme_commands import GENERATED, Command, all_rules, prepared
from test_air_gapped import hf_cache, offline_env  # noqa: F401 - the session fixture, shared

from sae_bench_amortization.digest import path_digest

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
DL_RELEASE = "sae_bench_pythia70m_sweep_topk_ctx128_0730"
DL_SAE_ID = "blocks.3.hook_resid_post__trainer_0"
FIRST = (
    "The ground-truth benchmark and the embedded default"  # writes the files later sections read
)
TARGET_ROWS = {
    "pythia-topk": ["amortized", "semi:30", "loca"],
    "batchtopk-steps": ["semi:5", "semi:50"],
    "gemma-jumprelu": ["amortized", "semi:30"],
    "dynamics": ["amortized"],
}
PAPER_COLUMNS = [f"{label} {what}" for label in ("NMSE", "dead", "ΔF1", "absorption")
                 for what in ("paper", "ours", "Δ")]  # fmt: skip


def ordered(found: list[Command]) -> list[Command]:
    return [c for c in found if c.section == FIRST] + [c for c in found if c.section != FIRST]


def plan_of(found: list[Command]) -> list[dict]:
    """The commands to run, each file of :data:`GENERATED` made just before the first command naming it."""
    plan, made = [], set()
    for command in ordered(found):
        if command.run is None:
            continue
        for name in GENERATED:  # in its order: a file before the ones made from it
            if name in command.run and name not in made:
                made.add(name)
                plan += [{"label": f"generate {name}", "argv": argv} for argv in GENERATED[name]]
        plan.append({"label": command.text, "argv": command.run, "section": command.section})
    return plan


@pytest.fixture(scope="module")
def readme_run(hf_cache, tmp_path_factory):
    """(the folder the commands ran in, their records in run order)."""
    found, _ = prepared()
    folder = tmp_path_factory.mktemp("readme")
    plan_path, results_path = (
        folder.parent / "readme_plan.json",
        folder.parent / "readme_results.json",
    )
    plan = plan_of(found)
    release_run = next(i for i, item in enumerate(plan) if item["argv"][:3] == ["saebench", "run", "--eval"]
                       and DL_RELEASE in item["argv"] and "amortization_gap" in item["argv"])  # fmt: skip
    argv = list(plan[release_run]["argv"])
    at = argv.index("--sae-release")
    ae_pt = hf_cache[0] / hf_cache[1]["dictionary_learning"]["ae_pt"][DL_SAE_ID]
    argv[at : at + 4] = ["--sae-path", str(ae_pt), "--sae-name", "trainer_0_ae_pt"]
    plan.insert(release_run + 1, {"label": "the same ae.pt by --sae-path", "argv": argv})
    plan_path.write_text(json.dumps(plan))
    env = {**offline_env(hf_cache[0]), "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run([sys.executable, str(HERE / "run_commands.py"), str(plan_path), str(results_path)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, json.loads(results_path.read_text())


def test_every_rule_matches_a_readme_command_and_every_command_is_run_or_excepted():
    found, used = prepared()
    assert not all_rules() - used, (
        f"substitutions or exceptions no README command matches: {all_rules() - used}"
    )
    assert all((c.run is None) != (c.why_not is None) for c in found)
    run = [c for c in found if c.run is not None]
    assert len(run) == 32 and len(found) - len(run) == 9, [c.text for c in found if c.run is None]


def test_every_readme_command_exits_0(readme_run):
    _, records = readme_run
    failed = [
        f"{r['label']} → exit {r['code']}: {r['stderr'][-400:]}" for r in records if r["code"] != 0
    ]
    assert not failed, "\n".join(failed)
    found, _ = prepared()
    assert {c.text for c in found if c.run is not None} <= {r["label"] for r in records}


def _record(records: list[dict], prefix: str) -> dict:
    return next(r for r in records if r["label"].startswith(prefix))


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown table of a ``TARGET.md`` section: header, rows."""
    lines = text.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append([cell.strip() for cell in line.strip("|").split("|")])
    return block[0], block[2:]


@pytest.mark.parametrize("target", ["pythia-topk", "batchtopk-steps", "gemma-jumprelu", "dynamics"])
def test_reproduce_prints_the_papers_rows_beside_ours(readme_run, target):
    folder, records = readme_run
    record = _record(records, f"saebench reproduce {target} --device cuda")
    assert record["code"] == 0
    text = (folder / "reproduction" / "smoke" / f"{target}.md").read_text()
    header, rows = _table(text.split("## Result", 1)[1])
    assert header == ["paper row", "our mode", *PAPER_COLUMNS, "L0 ours"]
    assert [row[1] for row in rows] == TARGET_ROWS[target]
    for row in rows:
        values = dict(zip(header, row, strict=True))
        for label in ("NMSE", "dead", "ΔF1", "absorption"):
            paper, ours, delta = (values[f"{label} {w}"] for w in ("paper", "ours", "Δ"))
            if paper != "–" and ours != "–":  # the difference is ours − paper, as printed
                assert abs(float(delta) - (float(ours) - float(paper))) <= 1.5e-3
        assert float(values["L0 ours"]) > 0
    assert "## Steps" in text and "the authors" in text  # the choices say whose they are
    assert "--scale smoke: the chain at tiny sizes" in text  # what is not comparable, and why
    if target in ("pythia-topk", "batchtopk-steps"):
        assert "model pythia-70m-deduped stands in for the paper's pythia-160m-deduped" in text
    assert record["stdout"].count("| paper row |") == 1  # the table is printed too


def test_reproduce_dynamics_checks_the_early_bound_and_keeps_every_checkpoint(readme_run):
    import pandas as pd

    folder, _ = readme_run
    text = (folder / "reproduction" / "smoke" / "dynamics.md").read_text()
    assert "dense paper > 0.66: ours" in text
    table = pd.read_csv(
        folder / "reproduction" / "smoke" / "results" / "dynamics" / "dynamics" / "dynamics.csv"
    )
    assert sorted(table["checkpoint"].unique()) == list(range(8))
    assert table.loc[table["checkpoint"] == 7, "sae"].str.endswith("__trainer_0").all()


def test_reproduce_gated_pattern_averages_per_architecture(readme_run):
    folder, _ = readme_run
    text = (folder / "reproduction" / "smoke" / "gated-pattern.md").read_text()
    header, rows = _table(text.split("## Result", 1)[1])
    assert header[:3] == ["architecture", "mode", "SAEs"]
    assert {(row[0], row[1]) for row in rows} == {(a, m) for a in ("gated", "topk")
                                                  for m in ("amortized", "semi:30", "non_amortized")}  # fmt: skip
    assert {row[2] for row in rows} == {"2"}
    assert (
        folder / "reproduction" / "smoke" / "results" / "gated-pattern-summary" / "summary.csv"
    ).is_file()
    assert "without numbers" in text


def test_every_step_output_exists_with_the_digest_its_manifest_holds(readme_run):
    folder, records = readme_run
    reproduction = folder / "reproduction" / "smoke"
    manifest = json.loads((reproduction / "reproduce.json").read_text())
    assert set(manifest["targets"]) == {"pythia-topk", "batchtopk-steps", "gemma-jumprelu", "dynamics",
                                        "gated-pattern"}  # fmt: skip
    steps = manifest["steps"]
    assert {"activations", "held_out", "train_topk", "train_loca", "train_batchtopk"} <= set(steps)
    for name, step in steps.items():
        assert step["state"] == "done", name
        for output, digest in step["outputs"].items():
            assert path_digest(reproduction / output) == digest, (name, output)
    for target in TARGET_ROWS:  # every result is fingerprinted
        for path in (reproduction / "results" / target).rglob("*_eval_results.json"):
            assert json.loads(path.read_text())["fingerprint"]
    batchtopk = json.loads((reproduction / "batchtopk" / "cfg.json").read_text())
    assert (
        batchtopk["architecture"] == "jumprelu"
    )  # saebench train --architecture batchtopk, as SAE-Lens saves it
    assert batchtopk["metadata"]["training_architecture"] == "batchtopk"
    # batchtopk-steps reused pythia-topk's activation files: its run skipped them as up to date
    batchtopk = _record(records, "saebench reproduce batchtopk-steps")
    assert "[activations] up to date" in batchtopk["stdout"]
    assert "[held_out] up to date" in batchtopk["stdout"]


def test_dry_run_lists_the_steps_and_writes_nothing_new(readme_run):
    folder, records = readme_run
    record = _record(records, "saebench reproduce pythia-topk --device cuda --dry-run")
    lines = record["stdout"].strip().splitlines()
    assert [line.split("]")[0] + "]" for line in lines] == [
        "[activations]", "[held_out]", "[train_topk]", "[train_loca]", "[evaluate_pythia-topk]"]  # fmt: skip
    assert all(": saebench " in line for line in lines)
    assert "up to date: saebench activations" in lines[0]  # it ran after the reproduction


def test_the_regex_selection_resolves_to_the_cached_trainers_each_loaded_offline(
    readme_run, hf_cache
):
    """The README's SAEBench-style selection (``--sae-regex`` / ``--sae-block-regex``) over the sweep: the
    three cached trainers, each loaded through SAE-Lens's release registry with its width and k."""
    folder, _ = readme_run
    release = hf_cache[1]["dictionary_learning"]["release"]
    for sae_id, (dict_size, k) in hf_cache[1]["dictionary_learning"]["dict_size_k"].items():
        path = folder / "eval_results" / "dead_dense" / f"{release}_{sae_id}_eval_results.json"
        result = json.loads(path.read_text())
        assert (result["sae_lens_release_id"], result["sae_lens_id"]) == (release, sae_id)
        assert (result["sae_cfg_dict"]["d_sae"], result["sae_cfg_dict"]["k"]) == (dict_size, k)


def test_the_gemma_scope_params_npz_release_converts_offline(readme_run, hf_cache):
    """SAE-Lens's Gemma Scope converter (params.npz → JumpReLU SAE) on the cached release, as
    ``reproduce gemma-jumprelu`` loaded it: the release's names and shapes."""
    folder, _ = readme_run
    gemma = hf_cache[1]["gemma_scope"]
    results = folder / "reproduction" / "smoke" / "results" / "gemma-jumprelu" / "amortization_gap"
    name = f"{gemma['release']}_{gemma['sae_ids'][0]}".replace("/", "_")
    cfg = json.loads((results / f"{name}_eval_results.json").read_text())["sae_cfg_dict"]
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"]) == (
        "jumprelu",
        gemma["d_in"],
        gemma["d_sae"],
    )
    assert cfg["metadata"]["hook_name"] == "blocks.12.hook_resid_post"


def _gap_result(folder: Path, name: str) -> dict:
    return json.loads(
        (folder / "eval_results" / "amortization_gap" / f"{name}_eval_results.json").read_text()
    )


def test_a_release_reads_its_own_model_hook_and_default_dataset(readme_run, hf_cache):
    """The README's air-gapped run (``--sae-release R --sae-id ID``, no activation source): the SAE's model
    (by TransformerLens name), its hook and the default dataset, all from the carried cache."""
    result = _gap_result(readme_run[0], f"{DL_RELEASE}_{DL_SAE_ID}")
    assert (result["sae_lens_release_id"], result["sae_lens_id"]) == (DL_RELEASE, DL_SAE_ID)
    dict_size, k = hf_cache[1]["dictionary_learning"]["dict_size_k"][DL_SAE_ID]
    assert (result["sae_cfg_dict"]["d_sae"], result["sae_cfg_dict"]["k"]) == (dict_size, k)
    activations = result["fingerprint"]["activations"]
    assert activations["model"] == "pythia-70m-deduped"
    assert activations["hook"] == "blocks.3.hook_resid_post"
    assert activations["text"]["dataset"] == "Skylion007/openwebtext"
    assert result["eval_config"]["n_tokens"] == 1000
    gap = result["eval_result_metrics"]["amortization"]["mean_gap"]
    assert math.isfinite(gap) and gap > 0  # the encoder's objective is above the solver's


def test_the_same_ae_pt_by_sae_path_gives_the_same_numbers(readme_run):
    """The cached ``ae.pt`` of that release through ``--sae-path``: same weights, same λ, same metrics."""
    by_release = _gap_result(readme_run[0], f"{DL_RELEASE}_{DL_SAE_ID}")
    by_path = _gap_result(readme_run[0], "local_trainer_0_ae_pt")
    assert (
        by_path["fingerprint"]["sae"]["weights_sha256"]
        == by_release["fingerprint"]["sae"]["weights_sha256"]
    )
    assert by_path["fingerprint"]["activations"] == by_release["fingerprint"]["activations"]
    metrics = by_path["eval_result_metrics"]["amortization"]
    expected = by_release["eval_result_metrics"]["amortization"]
    assert (
        metrics["l1_coefficient"] is expected["l1_coefficient"] is None
    )  # k_sparse (the TopK SAE's own): no λ
    for key in ("mean_gap", "mean_relative_gap"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-9, abs=0), key
    rows = {row["mode"]: row for row in by_release["eval_result_details"]}
    assert set(rows) == {row["mode"] for row in by_path["eval_result_details"]}
    for row in by_path["eval_result_details"]:
        for key in ("nmse", "l0", "objective", "dead_rate", "dense_rate"):
            assert row[key] == pytest.approx(rows[row["mode"]][key], rel=1e-9, abs=0), key
