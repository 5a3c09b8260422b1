"""Swap the self-attention of pretrained models for a linear-time mixer.

CALD keeps every pretrained weight except attention (paper section 3.1):
:func:`convert` walks a model, replaces each self-attention module in place by
an adapter around a mixer from :mod:`cald_brain.nnet` (looked up by name), and
reports what it replaced. Everything else (feature encoder, positional
convolution, layer norms, feed-forward blocks, heads) keeps its tensors,
bit for bit.

Supported hosts (detected from the layer classes found in the model):

================  ==========================================  ==============
family            layers                                      default mixer
================  ==========================================  ==============
speech encoders   HF Wav2Vec2 / HuBERT / WavLM / Data2VecAudio  ``bimamba2``
                  (both layer-norm layouts); Whisper encoder
text encoders     HF RoBERTa / BERT / XLM-R / CamemBERT       ``linformer``
causal LMs        HF GPT-NeoX (Pythia)                        ``mamba``
SpeechBrain       ``TransformerEncoderLayer``,                ``bimamba2``
                  ``ConformerEncoderLayer``
================  ==========================================  ==============

What the new mixer reuses is the mixer's own business: mixers that define
``from_attention`` (Linformer) receive the replaced attention's q/k/v/o
projections; the Mamba family starts fresh (no attention weight maps into a
state-space parameter, as in the reference).

Example
-------
>>> from transformers import Wav2Vec2Config, Wav2Vec2Model
>>> config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2,
...     num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
...     conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
...     num_conv_pos_embedding_groups=2)
>>> model = Wav2Vec2Model(config)
>>> report = convert(model, "bimamba2", d_state=8, headdim=8)
>>> len(report.replaced)
2
>>> model(torch.randn(1, 4000)).last_hidden_state.shape
torch.Size([1, 198, 32])

Authors
 * cald-brain developers 2026
"""

import inspect
import logging
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from cald_brain.nnet import build_mixer, get_mixer

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Masks -> SpeechBrain relative lengths
# ---------------------------------------------------------------------------


def hf_mask_to_lengths(attention_mask, seq_len):
    """Reduces any HF attention mask to SpeechBrain relative lengths.

    Accepts a 2-D frame mask ``[batch, time]`` (1/True = real), a 4-D boolean
    mask ``[batch, 1, q, time]`` (True = attend) or a 4-D additive mask (0 =
    attend, large negative = masked), as the different attention backends
    pass them. The last query row is read, which for right-padded inputs
    lists every real key in both bidirectional and causal masks.

    Arguments
    ---------
    attention_mask : torch.Tensor or None
        The mask an HF layer hands its attention module.
    seq_len : int
        Length of the time axis of the hidden states.

    Returns
    -------
    lengths : torch.Tensor or None
        Relative lengths ``[batch]``, or None when nothing is padded.

    Example
    -------
    >>> hf_mask_to_lengths(torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]), 4)
    tensor([0.7500, 1.0000])
    >>> additive = torch.zeros(1, 1, 4, 4)
    >>> additive[..., 2:] = torch.finfo(torch.float).min
    >>> hf_mask_to_lengths(additive, 4)
    tensor([0.5000])
    """
    if attention_mask is None:
        return None
    mask = attention_mask
    if mask.dim() == 4:
        mask = mask[:, 0, -1, :]
        valid = mask if mask.dtype == torch.bool else mask == 0
    elif mask.dim() == 2:
        valid = mask.bool()
    else:
        raise ValueError(
            f"Cannot read an attention mask of shape {tuple(attention_mask.shape)}: "
            "expected [batch, time] or [batch, 1, query, time]."
        )
    valid = valid[:, -seq_len:]
    counts = valid.sum(-1)
    if bool((counts == seq_len).all()):
        return None
    prefix = torch.arange(seq_len, device=valid.device) < counts.unsqueeze(1)
    if not torch.equal(prefix, valid):
        raise ValueError(
            "Linear-time mixers need right-padded inputs (real frames first); "
            "the attention mask has padding elsewhere."
        )
    return counts.clamp(min=1).float() / seq_len


def padding_mask_to_lengths(key_padding_mask):
    """SpeechBrain ``key_padding_mask`` (True = pad) to relative lengths.

    Arguments
    ---------
    key_padding_mask : torch.BoolTensor or None
        ``[batch, time]``.

    Returns
    -------
    lengths : torch.Tensor or None

    Example
    -------
    >>> padding_mask_to_lengths(torch.tensor([[False, False, True, True]]))
    tensor([0.5000])
    """
    if key_padding_mask is None:
        return None
    return hf_mask_to_lengths(~key_padding_mask.bool(), key_padding_mask.shape[1])


# ---------------------------------------------------------------------------
# Adapters: what sits where the attention module was
# ---------------------------------------------------------------------------


class HFAttentionAdapter(nn.Module):
    """Stands in for an HF self-attention module and calls a mixer.

    Returns the tuple the host layer unpacks (output, then ``None`` for
    attention weights and, for WavLM, the position bias).

    Arguments
    ---------
    mixer : torch.nn.Module
        Called as ``mixer(x, lengths)``.
    n_outputs : int
        Length of the tuple the host layer expects.

    Example
    -------
    >>> from cald_brain.nnet import Mamba2
    >>> adapter = HFAttentionAdapter(Mamba2(16, d_state=4, headdim=4), 2)
    >>> out, weights = adapter(torch.randn(2, 5, 16))
    >>> out.shape, weights
    (torch.Size([2, 5, 16]), None)
    """

    def __init__(self, mixer, n_outputs=2):
        super().__init__()
        self.mixer = mixer
        self.n_outputs = n_outputs

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        """Runs the mixer on ``hidden_states`` (other arguments are ignored).

        Arguments
        ---------
        hidden_states : torch.Tensor
            ``[batch, time, channels]``.
        attention_mask : torch.Tensor, optional
            Any HF mask, reduced with :func:`hf_mask_to_lengths`.
        *args, **kwargs
            Whatever else the host passes to attention (position ids,
            caches, ``output_attentions`` ...): unused by the mixer.

        Returns
        -------
        outputs : tuple
        """
        lengths = hf_mask_to_lengths(attention_mask, hidden_states.shape[1])
        y = self.mixer(hidden_states, lengths)
        return (y,) + (None,) * (self.n_outputs - 1)


class HFPostNormAttentionAdapter(HFAttentionAdapter):
    """Adapter for BERT-style attention blocks that end in add & norm.

    RoBERTa's attention block is ``LayerNorm(x + Dropout(W_o attn(x)))``.
    The mixer takes over q/k/v/o; the block's own dropout and LayerNorm are
    kept (the same modules, so their weights are untouched).

    Arguments
    ---------
    mixer : torch.nn.Module
        Called as ``mixer(x, lengths)``; includes the output projection.
    dropout : torch.nn.Module
        The replaced block's output dropout.
    LayerNorm : torch.nn.Module
        The replaced block's output LayerNorm (HF's attribute spelling).
    n_outputs : int
        Length of the tuple the host layer expects.

    Example
    -------
    >>> from cald_brain.nnet import Mamba2
    >>> adapter = HFPostNormAttentionAdapter(
    ...     Mamba2(16, d_state=4, headdim=4), nn.Dropout(0.1), nn.LayerNorm(16))
    >>> adapter(torch.randn(2, 5, 16))[0].shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, mixer, dropout, LayerNorm, n_outputs=2):
        super().__init__(mixer, n_outputs)
        self.dropout = dropout
        self.LayerNorm = LayerNorm

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        """Mixer, dropout, residual add and LayerNorm.

        Arguments
        ---------
        hidden_states : torch.Tensor
            ``[batch, time, channels]``.
        attention_mask : torch.Tensor, optional
            Any HF mask.
        *args, **kwargs
            Ignored.

        Returns
        -------
        outputs : tuple
        """
        y = super().forward(hidden_states, attention_mask)[0]
        y = self.LayerNorm(self.dropout(y) + hidden_states)
        return (y,) + (None,) * (self.n_outputs - 1)


class SBAttentionAdapter(nn.Module):
    """Stands in for a SpeechBrain attention module and calls a mixer.

    SpeechBrain layers call attention as ``att(q, k, v, attn_mask,
    key_padding_mask, pos_embs)`` and unpack ``(output, weights)``.

    Arguments
    ---------
    mixer : torch.nn.Module
        Called as ``mixer(x, lengths)``.

    Example
    -------
    >>> from cald_brain.nnet import BiMamba2
    >>> adapter = SBAttentionAdapter(BiMamba2(16, d_state=4, headdim=4))
    >>> x = torch.randn(2, 5, 16)
    >>> pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    >>> out, weights = adapter(x, x, x, key_padding_mask=pad)
    >>> out.shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, mixer):
        super().__init__()
        self.mixer = mixer

    def forward(
        self, query, key=None, value=None, attn_mask=None, key_padding_mask=None, pos_embs=None, **kwargs
    ):
        """Runs the mixer on ``query`` (self-attention: key = value = query).

        Arguments
        ---------
        query, key, value : torch.Tensor
            ``[batch, time, channels]``; only ``query`` is read.
        attn_mask : torch.Tensor, optional
            Ignored (the mixer decides what it attends to).
        key_padding_mask : torch.BoolTensor, optional
            ``[batch, time]``, True on padded frames.
        pos_embs : torch.Tensor, optional
            Ignored: order comes from the recurrence itself.
        **kwargs
            Ignored.

        Returns
        -------
        output : torch.Tensor
        weights : None
        """
        return self.mixer(query, padding_mask_to_lengths(key_padding_mask)), None


_ADAPTERS = (HFAttentionAdapter, SBAttentionAdapter)


# ---------------------------------------------------------------------------
# Families of host models
# ---------------------------------------------------------------------------


def _hf_n_outputs(layer, attr):
    """How many values the host layer unpacks from its attention call.

    transformers changed this across versions (Wav2Vec2 unpacked three values
    in 4.x and two in 5.x; WavLM three), so it is read from the layer's code.
    """
    try:
        source = inspect.getsource(type(layer).forward)
    except (OSError, TypeError):
        return 2
    match = re.search(r"([\w\s,]+?)=\s*self\.%s\(" % attr, source)
    if match is None:
        return 2
    return len([name for name in match.group(1).split(",") if name.strip()])


def _linear(weight, bias):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer = layer.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


@dataclass(frozen=True)
class _Family:
    name: str
    layer_classes: tuple
    attention_attr: str
    default_mixer: str
    causal: bool


_SPEECH = _Family(
    "speech encoder (HF)",
    tuple(
        f"{model}EncoderLayer{suffix}"
        for model in ("Wav2Vec2", "Hubert", "WavLM", "Data2VecAudio")
        for suffix in ("", "StableLayerNorm")
    ),
    "attention",
    "bimamba2",
    False,
)
_TEXT = _Family(
    "text encoder (HF)",
    ("RobertaLayer", "BertLayer", "XLMRobertaLayer", "CamembertLayer"),
    "attention",
    "linformer",
    False,
)
# Whisper's *encoder* layers only (its decoder's attention is causal and
# attends to the encoder: not CALD's conversion).
_WHISPER = _Family("Whisper encoder (HF)", ("WhisperEncoderLayer",), "self_attn", "bimamba2", False)
_CAUSAL_LM = _Family("causal LM (HF)", ("GPTNeoXLayer",), "attention", "mamba", True)
_SB_TRANSFORMER = _Family(
    "SpeechBrain transformer", ("TransformerEncoderLayer",), "self_att", "bimamba2", False
)
_SB_CONFORMER = _Family(
    "SpeechBrain conformer", ("ConformerEncoderLayer",), "mha_layer", "bimamba2", False
)
_FAMILIES = (_SPEECH, _WHISPER, _TEXT, _CAUSAL_LM, _SB_TRANSFORMER, _SB_CONFORMER)


def _family_of(layer):
    name = type(layer).__name__
    module = type(layer).__module__
    for family in _FAMILIES:
        if name not in family.layer_classes:
            continue
        is_sb = module.startswith("speechbrain")
        if is_sb == family.name.startswith("SpeechBrain"):
            return family
    return None


def _d_model(family, layer, attention):
    if family in (_SPEECH, _WHISPER, _CAUSAL_LM):
        for attr in ("embed_dim", "hidden_size"):
            if hasattr(attention, attr):
                return int(getattr(attention, attr))
        return int(attention.config.hidden_size)
    if family is _TEXT:
        return int(attention.self.query.in_features)
    return int(layer.norm1.norm.normalized_shape[0])


def _n_heads(family, attention):
    if family is _TEXT:
        return int(attention.self.num_attention_heads)
    for attr in ("num_heads", "num_attention_heads"):
        if hasattr(attention, attr):
            return int(getattr(attention, attr))
    if hasattr(attention, "att") and hasattr(attention.att, "num_heads"):
        return int(attention.att.num_heads)
    if hasattr(attention, "config"):
        return int(attention.config.num_attention_heads)
    return None


def _projections(family, attention):
    """The replaced attention's q/k/v/o as separate ``nn.Linear``s, or None."""
    if family is _TEXT:
        sa = attention.self
        return {"q": sa.query, "k": sa.key, "v": sa.value, "o": attention.output.dense}
    if family in (_SPEECH, _WHISPER) and all(hasattr(attention, f"{p}_proj") for p in "qkv"):
        return {
            "q": attention.q_proj,
            "k": attention.k_proj,
            "v": attention.v_proj,
            "o": attention.out_proj,
        }
    mha = getattr(attention, "att", None)
    if isinstance(mha, nn.MultiheadAttention) and mha._qkv_same_embed_dim:
        d = mha.embed_dim
        w, b = mha.in_proj_weight, mha.in_proj_bias
        parts = [_linear(w[i * d : (i + 1) * d], None if b is None else b[i * d : (i + 1) * d]) for i in range(3)]
        return dict(zip("qkv", parts), o=_linear(mha.out_proj.weight, mha.out_proj.bias))
    return None


def _default_kwargs(family, mixer_name, layer, attention, model):
    d_model = _d_model(family, layer, attention)
    kwargs = {"d_model": d_model}
    if mixer_name == "bimamba2" or mixer_name == "mamba2":
        # The paper's speech student: mamba_ssm defaults with expand = 1.
        kwargs.update(expand=1)
    elif mixer_name == "linformer":
        kwargs["nhead"] = _n_heads(family, attention)
        config = getattr(model, "config", None)
        max_len = getattr(config, "max_position_embeddings", None)
        if max_len is not None:
            kwargs["max_len"] = int(max_len)
    return kwargs


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


@dataclass
class ReplacedAttention:
    """One replaced attention module.

    Arguments
    ---------
    path : str
        Dotted module path of the replaced attention.
    old_class : str
        Class name of the attention that was removed.
    params_removed : int
        Parameters the attention held (those not carried into the mixer).
    params_added : int
        Parameters of the new mixer.
    reused : tuple
        Names of the attention projections the mixer copied.
    """

    path: str
    old_class: str
    params_removed: int
    params_added: int
    reused: tuple = ()


@dataclass
class ConversionReport:
    """What :func:`convert` did to a model.

    Arguments
    ---------
    model_class : str
        Class name of the converted model.
    family : str
        Host family that was recognised.
    mixer : str
        Registered name of the new mixer.
    mixer_kwargs : dict
        Arguments every mixer was built with (d_model included).
    params_before, params_after : int
        Parameter counts of the whole model.
    replaced : list of ReplacedAttention
    """

    model_class: str
    family: str
    mixer: str
    mixer_kwargs: dict
    params_before: int = 0
    params_after: int = 0
    replaced: list = field(default_factory=list)

    def __str__(self):
        lines = [
            f"{self.model_class} ({self.family}): {len(self.replaced)} self-attention "
            f"modules -> {self.mixer}({_format_kwargs(self.mixer_kwargs)})",
            f"{'module':<44} {'removed':>11} {'added':>11}  reused",
        ]
        for r in self.replaced:
            lines.append(
                f"{r.path:<44} {r.params_removed:>11,} {r.params_added:>11,}  "
                f"{', '.join(r.reused) or '-'}"
            )
        lines.append(
            f"parameters: {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_after / max(self.params_before, 1):.2f}x)"
        )
        return "\n".join(lines)


def _format_kwargs(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if not isinstance(v, nn.Parameter))


def _count(module):
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------


def find_attention_layers(model):
    """Lists the layers of ``model`` whose self-attention can be replaced.

    Arguments
    ---------
    model : torch.nn.Module

    Returns
    -------
    found : list of (str, torch.nn.Module, _Family)
        Dotted path, layer module and its family, in model order.

    Example
    -------
    >>> from speechbrain.lobes.models.transformer.Transformer import TransformerEncoder
    >>> enc = TransformerEncoder(num_layers=2, nhead=2, d_ffn=16, d_model=8)
    >>> [path for path, _, _ in find_attention_layers(enc)]
    ['layers.0', 'layers.1']
    """
    found = []
    for path, module in model.named_modules():
        family = _family_of(module)
        if family is None:
            continue
        attention = getattr(module, family.attention_attr, None)
        if isinstance(attention, nn.Module) and not isinstance(attention, _ADAPTERS):
            found.append((path, module, family))
    return found


def convert(model, mixer=None, **mixer_kwargs):
    """Replaces every self-attention of ``model`` by a linear-time mixer, in place.

    Arguments
    ---------
    model : torch.nn.Module
        An HF Wav2Vec2/HuBERT/WavLM/Data2VecAudio, RoBERTa/BERT or GPT-NeoX
        model (any head), or a SpeechBrain transformer/conformer encoder, or
        any module containing such layers.
    mixer : str, optional
        Registered mixer name (see :func:`cald_brain.nnet.available_mixers`);
        by default the family's mixer from the table in the module docstring.
    **mixer_kwargs
        Mixer constructor arguments. ``d_model`` (and, for Linformer,
        ``nhead`` and ``max_len``) are taken from the model unless given.

    Returns
    -------
    report : ConversionReport
        What was replaced; ``str(report)`` is a readable table.

    Raises
    ------
    ValueError
        If the model has no self-attention layer this function recognises,
        mixes families, or a bidirectional mixer is asked for a causal LM.
    KeyError
        If ``mixer`` is not a registered name.

    Example
    -------
    >>> from speechbrain.lobes.models.transformer.Transformer import TransformerEncoder
    >>> enc = TransformerEncoder(num_layers=2, nhead=2, d_ffn=16, d_model=8)
    >>> report = convert(enc, "bimamba2", d_state=4, headdim=4)
    >>> [r.path for r in report.replaced]
    ['layers.0.self_att', 'layers.1.self_att']
    >>> enc(torch.randn(2, 6, 8))[0].shape
    torch.Size([2, 6, 8])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert expects a torch.nn.Module, got {type(model).__name__}.")
    layers = find_attention_layers(model)
    if not layers and any(isinstance(m, _ADAPTERS) for m in model.modules()):
        raise ValueError(
            f"{type(model).__name__} is already converted: all its self-attention "
            "modules are linear-time mixers."
        )
    if not layers:
        supported = sorted({c for f in _FAMILIES for c in f.layer_classes})
        raise ValueError(
            f"No self-attention that cald_brain.convert recognises was found in "
            f"{type(model).__name__} (already converted, or an unsupported "
            f"architecture). Supported layer classes: {', '.join(supported)}."
        )
    families = {family for _, _, family in layers}
    if len(families) > 1:
        raise ValueError(
            "The model mixes layer families ("
            + ", ".join(sorted(f.name for f in families))
            + "); convert its sub-models one at a time."
        )
    family = families.pop()
    mixer_name = (mixer or family.default_mixer).lower()
    mixer_cls = get_mixer(mixer_name)  # KeyError with the list of names
    if family.causal and not getattr(mixer_cls, "causal", False):
        raise ValueError(
            f"{type(model).__name__} is a causal language model; the mixer "
            f"'{mixer_name}' is not causal and would let tokens see the future. "
            f"Use a causal mixer such as 'mamba' or 'mamba2'."
        )

    first_path, first_layer, _ = layers[0]
    first_attention = getattr(first_layer, family.attention_attr)
    kwargs = _default_kwargs(family, mixer_name, first_layer, first_attention, model)
    kwargs.update(mixer_kwargs)
    if mixer_name == "linformer" and kwargs.get("share") == "layerwise" and "shared_projection" not in kwargs:
        # One E = F for the whole stack (Linformer's layerwise sharing).
        kwargs["shared_projection"] = mixer_cls.new_shared_projection(
            kwargs.get("max_len", 512), kwargs.get("k", 256)
        )

    report = ConversionReport(
        model_class=type(model).__name__,
        family=family.name,
        mixer=mixer_name,
        mixer_kwargs=kwargs,
        params_before=_count(model),
    )
    for path, layer, _ in layers:
        attention = getattr(layer, family.attention_attr)
        d_model = _d_model(family, layer, attention)
        if d_model != kwargs["d_model"]:
            raise ValueError(
                f"{path}: attention width {d_model} differs from d_model="
                f"{kwargs['d_model']}; layers of different widths are not supported."
            )
        projections = _projections(family, attention)
        new_mixer = build_mixer(mixer_name, projections=projections, **kwargs)
        reused = tuple(sorted(projections)) if projections and hasattr(mixer_cls, "from_attention") else ()
        ref = next(attention.parameters(), None)
        if ref is not None:
            new_mixer = new_mixer.to(device=ref.device, dtype=ref.dtype)
        if family is _TEXT:
            adapter = HFPostNormAttentionAdapter(
                new_mixer,
                attention.output.dropout,
                attention.output.LayerNorm,
                _hf_n_outputs(layer, family.attention_attr),
            )
            kept = _count(attention.output.LayerNorm)
        elif family.name.startswith("SpeechBrain"):
            adapter = SBAttentionAdapter(new_mixer)
            kept = 0
        else:
            adapter = HFAttentionAdapter(new_mixer, _hf_n_outputs(layer, family.attention_attr))
            kept = 0
        adapter.train(attention.training)
        setattr(layer, family.attention_attr, adapter)
        report.replaced.append(
            ReplacedAttention(
                path=f"{path}.{family.attention_attr}" if path else family.attention_attr,
                old_class=type(attention).__name__,
                params_removed=_count(attention) - kept,
                params_added=_count(new_mixer),
                reused=reused,
            )
        )
    report.params_after = _count(model)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        # Recorded so a converted checkpoint can be rebuilt from the config.
        config.cald_conversion = {"mixer": mixer_name, "mixer_kwargs": dict(mixer_kwargs)}
    logger.info("Converted %s", report)
    return report
