"""A tiny, randomly initialised Qwen2.5-VL whose files are those of the real Qwen2.5-VL-3B-Instruct.

Every command must run end to end on a laptop or in CI, with no GPU and no hub, and a test that
passes on the miniature must not fail on the real model. So the folder carries the real
checkpoint's `config.json` (only the sizes shrunk), `generation_config.json`,
`preprocessor_config.json` (min/max pixels 3136 / 12845056), `chat_template.json`,
`tokenizer_config.json` and Qwen2's real byte-level BPE `tokenizer.json` ("Hello world" is
[9707, 1879], `<|image_pad|>` is 151655). Only the weights are small (a few million parameters,
bf16 as the real ones) and random: its answers are noise, the plumbing around it is real.

The real files live in `resources/qwen2_5_vl_3b_instruct/` (the hub cannot be reached here, so
they were read from public copies, each cross-checked):
- config.json: a verbatim copy of Qwen/Qwen2.5-VL-3B-Instruct's config in a public model-notes
  repository; every size and id agrees with a second, C++ test fixture "selected from
  Qwen2.5VL-3B". Sizes are replaced by `_tiny_config`; everything else is kept, the flat v4
  layout and `torch_dtype` included (transformers 5 would write a nested one).
- generation_config.json: bos/pad 151643, eos [151645, 151643], do_sample, repetition_penalty
  1.05, temperature 1e-06, no top_p/top_k: the file of two fine-tunes of the 3B model
  (stanford-oval/churro-3B and a 3B-sized derivative published with its generation_config), and
  the sampling defaults vLLM 0.9 logs for Qwen2.5-VL ({'repetition_penalty': 1.05,
  'temperature': 1e-06}). Its `transformers_version` is left out (unknown, read by nobody).
- preprocessor_config.json: verbatim as written back by a notebook into the Kaggle copy of the
  3B-Instruct model; the same keys and values as a Rust fixture "trimmed from Qwen2.5-VL-7B".
- chat_template.json: the template whose JSON-encoded text hashes to the sha256
  4df95d05455c2a6f762616492bba63d0f9bef904ef47daabad35f5715d6d2e4e recorded for the official
  Qwen2.5-VL template by a renderer-validation report (checked), and the template transformers'
  own Qwen2-VL processor tests use.
- tokenizer_config.json: the fields a printed Qwen2.5-VL `Qwen2TokenizerFast` shows
  (eos `<|im_end|>`, pad `<|endoftext|>`, model_max_length 131072, the 13 additional special
  tokens, `<tool_call>`..`<|file_sep|>` added but not special, no clean-up of spaces), in the
  layout of Qwen2.5's tokenizer_config (bos/unk null, tokenizer_class Qwen2Tokenizer).
- tokenizer.json, vocab.json, merges.txt: built here from Qwen's 151,643 BPE ranks shipped by the
  `dashscope` package (Apache-2.0): vocab and merges byte for byte the size of Qwen's own files,
  in transformers' own `Qwen2Tokenizer` pipeline (NFC, the Qwen2 split regex, byte-level), plus
  the 22 special tokens at 151643+. It reproduces the ids of transformers' Qwen2 tokenizer
  integration test (English, Chinese, code), see tests/test_tiny_model.py.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import itertools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from satori_cli import outputs
from satori_cli.errors import SatoriError, require

REFERENCE_DIR = Path(__file__).parent / "resources" / "qwen2_5_vl_3b_instruct"
# The real checkpoint's files that are written as they are (config.json is resized first).
COPIED_FILES = (
    "generation_config.json",
    "preprocessor_config.json",
    "chat_template.json",
    "tokenizer_config.json",
)

BPE_RANKS = 151643  # Qwen2's regular tokens; its added tokens follow from this id on
MARKER = "satori-tiny.json"
BPE_RANKS_PACKAGE = "dashscope"
BPE_RANKS_FILE = ("resources", "qwen.tiktoken")
BPE_RANKS_INSTALL = "pip install 'dashscope>=2.0.2,<3'"


def is_tiny_model(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


def reference_file(name: str) -> dict[str, Any]:
    """One of the real Qwen2.5-VL-3B-Instruct files, as data."""
    return json.loads((REFERENCE_DIR / name).read_text(encoding="utf-8"))


def bpe_ranks_path() -> Path:
    """Qwen's BPE ranks (`qwen.tiktoken`) inside the installed dashscope package.

    Located without importing dashscope (a large SDK): only its data file is used.
    """
    spec = importlib.util.find_spec(BPE_RANKS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SatoriError(
            "Building the tiny model's tokenizer needs Qwen's BPE ranks from the Python package "
            "'dashscope', which is not installed",
            hint=f"install it with: {BPE_RANKS_INSTALL}",
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*BPE_RANKS_FILE)
    if not path.is_file():
        raise SatoriError(
            f"the installed dashscope has no {'/'.join(BPE_RANKS_FILE)}",
            hint=f"install one that ships it with: {BPE_RANKS_INSTALL}",
        )
    return path


def read_bpe_ranks(path: Path) -> dict[bytes, int]:
    """A tiktoken ranks file: one `base64(token) rank` per line.

    Read here rather than with tiktoken, whose loader copies even a local file into a cache
    under the system temp folder.
    """
    ranks: dict[bytes, int] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != BPE_RANKS or sorted(ranks.values()) != list(range(BPE_RANKS)):
        raise SatoriError(f"{path} does not hold Qwen's {BPE_RANKS} BPE ranks", exit_code=1)
    return ranks


def _merge_pair(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two parts byte-level BPE joins into `token`: merge its bytes using only lower ranks."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        pairs = [(ranks.get(a + b, rank), i) for i, (a, b) in enumerate(itertools.pairwise(parts))]
        best, i = min(pairs)
        if best >= rank:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise SatoriError(f"BPE rank {rank} is not the merge of two lower-ranked tokens", exit_code=1)
    return parts[0], parts[1]


@functools.lru_cache(maxsize=1)
def qwen2_tokenizer_files() -> dict[str, str]:
    """Qwen2's tokenizer from its BPE ranks, as the three files the real checkpoint ships
    (`tokenizer.json`, `vocab.json`, `merges.txt`: name -> text): vocab, merges, pre-tokenizer
    and special tokens.

    One merge per multi-byte token, in rank order, recovered by merging its bytes with the
    lower ranks: this reproduces Qwen's merges.txt (151,387 merges, 1,671,853 bytes) and
    vocab.json (3,383,406 bytes). Deterministic and a few seconds, so built once per process.
    """
    require("transformers", "train", "Building the tiny model")
    from tokenizers import AddedToken, processors
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks = read_bpe_ranks(bpe_ranks_path())
    byte_symbol = bytes_to_unicode()  # GPT-2's printable stand-in for each byte

    def text(token: bytes) -> str:
        return "".join(byte_symbol[b] for b in token)

    ordered = sorted(ranks, key=ranks.__getitem__)
    vocab = {text(token): ranks[token] for token in ordered}
    merges = [tuple(map(text, _merge_pair(t, ranks[t], ranks))) for t in ordered if len(t) > 1]
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token=None, pad_token=None)
    backend = tok.backend_tokenizer
    backend.post_processor = processors.ByteLevel(trim_offsets=False)  # as Qwen2's tokenizer.json
    # The added tokens, as the real tokenizer_config.json lists them: <|endoftext|> ..
    # <|video_pad|> special (skipped by skip_special_tokens), <tool_call> .. <|file_sep|> not.
    added = sorted(
        (int(i), t) for i, t in reference_file("tokenizer_config.json")["added_tokens_decoder"].items()
    )
    for token_id, spec in added:
        token = AddedToken(spec["content"], normalized=False, special=spec["special"])
        (backend.add_special_tokens if spec["special"] else backend.add_tokens)([token])
        if backend.token_to_id(spec["content"]) != token_id:
            raise SatoriError(f"the tokenizer put {spec['content']} at another id than {token_id}", 1)
    return {
        "tokenizer.json": backend.to_str(),
        "vocab.json": json.dumps(vocab, indent=2, ensure_ascii=False),
        "merges.txt": "\n".join(["#version: 0.2", *(f"{a} {b}" for a, b in merges)]) + "\n",
    }


def _tiny_config(hidden_size: int, layers: int) -> dict[str, Any]:
    """The real config.json with every size shrunk; ids, rope, dtype and layout stay real."""
    config = reference_file("config.json")
    heads = 2
    config.update(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=1,
    )
    half = hidden_size // heads // 2  # the real split (16, 24, 24 of 64) scaled: 2, 3, 3 for head_dim 16
    spatial = 3 * half // 8
    config["rope_scaling"]["mrope_section"] = [half - 2 * spatial, spatial, spatial]
    config["vision_config"].update(
        depth=2,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_heads=heads,
        out_hidden_size=hidden_size,
        fullatt_block_indexes=[1],
    )
    return config


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    layers: int = 2,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Build and save the tiny model into `out_dir` (one already there is kept unless `overwrite`).

    The folder is written next to its final place and renamed in, so an interrupted build
    never leaves a half model that later commands would trust.
    """
    out = Path(out_dir).expanduser().resolve()
    if outputs.check_folder(out, "--out"):  # a file or a special file is refused in one line
        if not is_tiny_model(out):  # --overwrite replaces only a tiny model satori built
            raise SatoriError(
                f"--out {out} is not empty and is not a tiny model satori built: satori neither "
                "writes into it nor replaces it",
                hint="choose a new or empty folder",
            )
        if not overwrite:
            return out
    if hidden_size % 4 or hidden_size < 16:
        raise SatoriError("--hidden-size must be a multiple of 4 and at least 16")
    if layers < 1:
        raise SatoriError("--layers must be at least 1")
    torch = require("torch", "train", "Building the tiny model")
    transformers = require("transformers", "train", "Building the tiny model")
    tokenizer = qwen2_tokenizer_files()  # fails early, before any folder is made

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:  # read-only, not ours, or /proc
        raise SatoriError(f"--out {out}: cannot write in {out.parent} ({exc.strerror or exc})") from None
    try:
        config = _tiny_config(hidden_size, layers)
        _write_json(tmp / "config.json", config)
        torch.manual_seed(seed)
        model = transformers.Qwen2_5_VLForConditionalGeneration(transformers.AutoConfig.from_pretrained(tmp))
        model.to(torch.bfloat16).save_pretrained(tmp)  # weights only: the json files follow
        _write_json(tmp / "config.json", config)
        for name in COPIED_FILES:
            shutil.copyfile(REFERENCE_DIR / name, tmp / name)
        for name, text in tokenizer.items():
            (tmp / name).write_text(text, encoding="utf-8")
        meta = {
            "kind": "tiny-qwen2_5_vl",
            "mirrors": "Qwen/Qwen2.5-VL-3B-Instruct",
            "parameters": sum(p.numel() for p in model.parameters()),
            "seed": seed,
            "hidden_size": hidden_size,
            "layers": layers,
        }
        _write_json(tmp / MARKER, meta)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when renamed into place
    return out
