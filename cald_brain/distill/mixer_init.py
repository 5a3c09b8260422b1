"""Mixer-aware starts: how the new mixers of a converted student begin.

A converted student keeps every pretrained weight except attention; the new
mixers start from their own random initialisation (the paper). Measured on
the Whisper tiny.en encoder (offline-assets section 6), a fresh mixer
scrambles the copied weights around it: the guided student starts at chance
and generalises worse than one whose mixers start aware of the layer they
sit in. Three starts are available (hparam ``mixer_init``):

``default``
    The paper: new mixers at their own random init.
``zero``
    Each new mixer's output projection(s) start at zero, so at step 0 every
    converted layer is the pretrained layer with the attention contribution
    removed (:func:`zero_output_projections`); the mixers then grow in
    without disturbing the copied weights.
``attention_transfer``
    A first stage of ``transfer_steps`` optimizer steps trains only the new
    mixers, each layer on its own, teacher-forced: the mixer's adapter gets
    the *unconverted* model's own input to that attention (after its
    pre-norm) and learns to reproduce that attention's output
    (:class:`AttentionTransfer`). The unconverted model is a frozen copy
    :func:`~cald_brain.distill.student.build_student` keeps before
    converting (:class:`TransferTeacher`). Normal training (main optimizer,
    the mode's guide) follows.

Authors
 * cald-brain developers 2026
"""

import contextlib
import dataclasses
import functools
import logging
from typing import List

import torch

from cald_brain.distill.checkpointing import unwrap_module
from cald_brain.distill.losses import frame_mask
from cald_brain.distill.outputs import ModelOutputs

logger = logging.getLogger(__name__)

MIXER_INITS = ("default", "zero", "attention_transfer")

#: Attribute of the converted model that holds its :class:`TransferTeacher`.
TRANSFER_TEACHER_ATTR = "cald_transfer_teacher"


def check_mixer_init(mixer_init, where="mixer_init"):
    """Raises a ``ValueError`` naming the valid starts if ``mixer_init`` is none.

    Arguments
    ---------
    mixer_init : str
        The start asked for.
    where : str
        Name of the option (for the message).

    Example
    -------
    >>> check_mixer_init("zero")
    >>> check_mixer_init("ones")
    Traceback (most recent call last):
    ...
    ValueError: mixer_init must be one of ('default', 'zero', 'attention_transfer'), got 'ones'.
    """
    if mixer_init not in MIXER_INITS:
        raise ValueError(f"{where} must be one of {MIXER_INITS}, got {mixer_init!r}.")


def find_mixers(model):
    """The converted attention sites of ``model``: adapters around new mixers.

    Arguments
    ---------
    model : torch.nn.Module
        A model converted by :func:`cald_brain.convert.convert` (or any
        module containing one).

    Returns
    -------
    found : list of (str, torch.nn.Module)
        Dotted path and adapter (``HFAttentionAdapter``,
        ``HFPostNormAttentionAdapter`` or ``SBAttentionAdapter``; the new
        mixer is its ``.mixer``), in model order.

    Example
    -------
    >>> from speechbrain.lobes.models.transformer.Transformer import TransformerEncoder
    >>> from cald_brain.convert import convert
    >>> enc = TransformerEncoder(num_layers=2, nhead=2, d_ffn=16, d_model=8)
    >>> _ = convert(enc, "bimamba2", d_state=4, headdim=4)
    >>> [path for path, _ in find_mixers(enc)]
    ['layers.0.self_att', 'layers.1.self_att']
    """
    from cald_brain.convert import HFAttentionAdapter, SBAttentionAdapter

    model = unwrap_module(model)
    return [
        (path, module)
        for path, module in model.named_modules()
        if isinstance(module, (HFAttentionAdapter, SBAttentionAdapter))
    ]


def output_projections(mixer):
    """The linear layer(s) that write a mixer's output.

    Arguments
    ---------
    mixer : torch.nn.Module
        A mixer of :mod:`cald_brain.nnet`.

    Returns
    -------
    projections : list of (str, torch.nn.Linear)
        Name (relative to the mixer) and layer: both directions'
        ``out_proj`` for BiMamba2, ``out_proj`` for Mamba, Mamba2 and
        Linformer.

    Raises
    ------
    TypeError
        For a mixer type whose output projection is not known.

    Example
    -------
    >>> from cald_brain.nnet import BiMamba2
    >>> [name for name, _ in output_projections(BiMamba2(16, d_state=4, headdim=4))]
    ['fw_mamba.out_proj', 'bw_mamba.out_proj']
    """
    from cald_brain.nnet import BiMamba2, LinformerSelfAttention, Mamba, Mamba2

    if isinstance(mixer, BiMamba2):
        names = ["fw_mamba.out_proj", "bw_mamba.out_proj"]
    elif isinstance(mixer, (Mamba, Mamba2, LinformerSelfAttention)):
        names = ["out_proj"]
    else:
        raise TypeError(
            f"mixer_init 'zero': the output projection of a "
            f"{type(mixer).__module__}.{type(mixer).__name__} mixer is not "
            "known (known: BiMamba2, Mamba2, Mamba, LinformerSelfAttention); "
            "use mixer_init 'default' or 'attention_transfer' with it."
        )
    return [(name, mixer.get_submodule(name)) for name in names]


def zero_output_projections(model):
    """Zeroes the output projection(s) of every new mixer (``mixer_init: zero``).

    Each converted layer then computes, at step 0, the pretrained layer with
    its attention contribution removed (pre-norm: ``x + FFN(LN(x))``;
    post-norm: ``LN(x)`` then the FFN block). BiMamba2 with
    ``residual_inside=True`` outputs its own input instead of zero.

    Arguments
    ---------
    model : torch.nn.Module
        A converted model.

    Returns
    -------
    zeroed : list of str
        Dotted names of the zeroed projections.

    Example
    -------
    >>> from speechbrain.lobes.models.transformer.Transformer import TransformerEncoder
    >>> from cald_brain.convert import convert
    >>> enc = TransformerEncoder(num_layers=1, nhead=2, d_ffn=16, d_model=8)
    >>> _ = convert(enc, "mamba2", d_state=4, headdim=4)
    >>> zero_output_projections(enc)
    ['layers.0.self_att.mixer.out_proj']
    >>> bool(enc.layers[0].self_att.mixer.out_proj.weight.abs().sum() == 0)
    True
    """
    sites = find_mixers(model)
    if not sites:
        raise ValueError(
            f"mixer_init 'zero': {type(unwrap_module(model)).__name__} has no "
            "converted mixer (convert it first, e.g. build_student(..., mixer=...))."
        )
    zeroed = []
    with torch.no_grad():
        for path, adapter in sites:
            for name, layer in output_projections(adapter.mixer):
                layer.weight.zero_()
                if layer.bias is not None:
                    layer.bias.zero_()
                zeroed.append(f"{path}.mixer.{name}")
    return zeroed


class TransferTeacher:
    """Holds the frozen, unconverted copy of a student without registering it.

    A plain object, not an ``nn.Module``: stored as an attribute of the
    student (:func:`attach_transfer_teacher`), the copy is not a submodule,
    so it is not in the student's ``state_dict``, not optimised, not moved by
    ``.to()`` and not wrapped by DDP. ``copy.deepcopy`` of the student
    shares it (it never changes) and pickling the student drops it.

    Arguments
    ---------
    module : torch.nn.Module
        The unconverted model (frozen here: no gradients, eval mode).

    Example
    -------
    >>> holder = TransferTeacher(torch.nn.Linear(2, 2))
    >>> holder.module.weight.requires_grad, holder.module.training
    (False, False)
    """

    def __init__(self, module):
        for param in module.parameters():
            param.requires_grad_(False)
        self.module = module.eval()

    def __deepcopy__(self, memo):
        return self

    def __getstate__(self):
        return {"module": None}

    def __setstate__(self, state):
        self.module = state["module"]

    def __repr__(self):
        return f"TransferTeacher({type(self.module).__name__})"


def attach_transfer_teacher(student, teacher):
    """Stores ``teacher`` (the unconverted model) on ``student``, unregistered.

    Arguments
    ---------
    student : torch.nn.Module
        The converted model.
    teacher : torch.nn.Module
        Its unconverted copy.

    Example
    -------
    >>> student = torch.nn.Linear(2, 2)
    >>> attach_transfer_teacher(student, torch.nn.Linear(2, 2))
    >>> sorted(student.state_dict()), get_transfer_teacher(student) is not None
    (['bias', 'weight'], True)
    """
    # nn.Module.__setattr__ keeps a non-Module value as a plain attribute.
    setattr(student, TRANSFER_TEACHER_ATTR, TransferTeacher(teacher))


def get_transfer_teacher(model):
    """The unconverted copy kept by ``build_student(..., mixer_init=
    "attention_transfer")``, looked up on ``model`` and its submodules.

    Arguments
    ---------
    model : torch.nn.Module

    Returns
    -------
    found : tuple of (torch.nn.Module, torch.nn.Module) or None
        The converted module that holds the copy, and the copy; None when
        no module holds one.

    Example
    -------
    >>> get_transfer_teacher(torch.nn.Linear(2, 2)) is None
    True
    """
    found = []
    for module in unwrap_module(model).modules():
        holder = getattr(module, TRANSFER_TEACHER_ATTR, None)
        if isinstance(holder, TransferTeacher) and holder.module is not None:
            found.append((module, holder.module))
    if len(found) > 1:
        raise ValueError(
            f"{len(found)} submodules of {type(model).__name__} keep an "
            "unconverted copy for attention transfer; build the student with "
            "one build_student(..., mixer_init='attention_transfer') only."
        )
    return found[0] if found else None


@dataclasses.dataclass
class TransferOutputs:
    """One batch of the attention-transfer stage.

    Arguments
    ---------
    loss : torch.Tensor
        Scalar: the per-layer relative errors averaged over layers (with
        gradients to the mixers only).
    layer_errors : torch.Tensor
        ``[n_layers]``, detached: each layer's masked MSE divided by its
        target's energy.
    paths : list of str
        The converted attention sites, in the order of ``layer_errors``.
    """

    loss: torch.Tensor
    layer_errors: torch.Tensor
    paths: List[str]


@dataclasses.dataclass
class _Capture:
    args: tuple = None
    kwargs: dict = None
    output: torch.Tensor = None
    calls: int = 0


def _capture_input(record, module, args, kwargs):
    del module
    record.args, record.kwargs = args, kwargs
    record.calls += 1


def _capture_output(record, module, args, output):
    del module, args
    record.output = output[0] if isinstance(output, (tuple, list)) else output


@contextlib.contextmanager
def _only_mixer_gets_grads(adapter):
    """Freezes the adapter's own (host) weights, e.g. the post-norm
    LayerNorm, while it is called: autograd records ``requires_grad`` when
    the graph is built, so those weights keep ``grad=None``."""
    mixer_params = {id(p) for p in adapter.mixer.parameters()}
    host = [
        p for p in adapter.parameters() if id(p) not in mixer_params and p.requires_grad
    ]
    for param in host:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in host:
            param.requires_grad_(True)


def relative_error(prediction, target, mask):
    """Masked MSE divided by the target's energy, over real frames only.

    Arguments
    ---------
    prediction : torch.Tensor
        ``[batch, time, channels]``.
    target : torch.Tensor
        Same shape.
    mask : torch.BoolTensor
        ``[batch, time]``, True on real frames.

    Returns
    -------
    error : torch.Tensor
        Scalar, ``mean((prediction - target)^2) / mean(target^2)`` over the
        real frames (0 for a perfect prediction, 1 for a zero prediction).

    Example
    -------
    >>> target = torch.ones(1, 3, 2)
    >>> mask = torch.tensor([[True, True, False]])
    >>> float(relative_error(torch.zeros(1, 3, 2), target, mask))
    1.0
    """
    weights = mask.unsqueeze(-1).to(torch.float32)
    target = target.float()
    squared_error = ((prediction.float() - target) ** 2 * weights).sum()
    energy = (target**2 * weights).sum()
    return squared_error / energy.clamp_min(torch.finfo(torch.float32).tiny)


class AttentionTransfer:
    """The attention-transfer stage: each new mixer learns its attention's map.

    For every converted attention site the unconverted teacher (the copy
    :func:`~cald_brain.distill.student.build_student` kept) is run once on
    the batch through the brain's ``teacher_forward``, without gradients and
    in eval mode; forward pre-hooks (``with_kwargs=True``) record the
    positional and keyword arguments of each of its attention modules
    (the input *after* a pre-norm, the mask the host passes ...) and forward
    hooks their first output. The student's adapter at the same path is then
    called with the same arguments, and the loss of the layer is
    :func:`relative_error` over the real frames of the teacher's frame mask
    (``ModelOutputs.mask``); the batch loss averages the layers. Only mixer
    parameters get gradients: the adapter's own host weights (a post-norm
    block's LayerNorm) are frozen during the call.

    :class:`~cald_brain.distill.brain.DistillBrain` runs this stage for the
    first ``steps`` optimizer steps with :attr:`optimizer` (built by
    :meth:`build_optimizer` over :meth:`mixer_parameters`).

    Arguments
    ---------
    student : torch.nn.Module
        A student built with ``build_student(..., mixer_init=
        "attention_transfer")`` (or any module containing one).
    steps : int
        Number of optimizer steps of the stage (>= 0).
    opt_class : callable, optional
        Builds the stage's optimizer from the mixer parameters; default
        AdamW, lr 2e-3 (constant).

    Example
    -------
    >>> from speechbrain.lobes.models.transformer.Transformer import TransformerEncoder
    >>> from cald_brain.distill import build_student
    >>> student = build_student(
    ...     lambda: TransformerEncoder(num_layers=2, nhead=2, d_ffn=16, d_model=8),
    ...     mixer="bimamba2", mixer_kwargs={"d_state": 4, "headdim": 4},
    ...     mixer_init="attention_transfer")
    >>> transfer = AttentionTransfer(student, steps=3)
    >>> transfer.paths
    ['layers.0.self_att', 'layers.1.self_att']
    >>> class Brain:  # the one hook AttentionTransfer calls
    ...     def teacher_forward(self, model, x, stage):
    ...         return ModelOutputs(None, [model(x)[0]])
    >>> out = transfer(Brain(), torch.randn(2, 5, 8), None)
    >>> out.layer_errors.shape, out.loss.requires_grad
    (torch.Size([2]), True)
    """

    def __init__(self, student, steps, opt_class=None):
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(
                f"transfer_steps must be an integer >= 0, got {steps!r}."
            )
        found = get_transfer_teacher(student)
        if found is None:
            detail = (
                "it has no converted mixer"
                if not find_mixers(student)
                else "it keeps no unconverted copy to learn from"
            )
            raise ValueError(
                f"mixer_init 'attention_transfer': the student "
                f"{type(unwrap_module(student)).__name__} was not built with "
                f"build_student(..., mixer=..., mixer_init='attention_transfer') "
                f"({detail})."
            )
        converted, self.teacher = found
        sites = find_mixers(converted)
        if not sites:
            raise ValueError(
                "mixer_init 'attention_transfer': the student has no converted "
                "mixer to train."
            )
        self.steps = steps
        self.opt_class = opt_class or functools.partial(torch.optim.AdamW, lr=2e-3)
        self.optimizer = None
        self.paths = [path for path, _ in sites]
        self.adapters = [adapter for _, adapter in sites]
        self.teacher_attentions = []
        for path in self.paths:
            try:
                attention = self.teacher.get_submodule(path)
            except AttributeError as err:
                raise ValueError(
                    f"mixer_init 'attention_transfer': the unconverted copy has "
                    f"no module '{path}' where the student has a mixer."
                ) from err
            self.teacher_attentions.append(attention)

    def mixer_parameters(self):
        """The trainable parameters of the new mixers (each once).

        Returns
        -------
        params : list of torch.nn.Parameter
        """
        seen, params = set(), []
        for adapter in self.adapters:
            for param in adapter.mixer.parameters():
                if param.requires_grad and id(param) not in seen:
                    seen.add(id(param))
                    params.append(param)
        return params

    def build_optimizer(self):
        """Builds :attr:`optimizer` over :meth:`mixer_parameters` (once).

        Returns
        -------
        optimizer : torch.optim.Optimizer
        """
        if self.optimizer is None:
            params = self.mixer_parameters()
            if not params:
                raise ValueError(
                    "mixer_init 'attention_transfer': the new mixers have no "
                    "trainable parameter."
                )
            self.optimizer = self.opt_class(params)
        return self.optimizer

    def to(self, device):
        """Moves the unconverted teacher.

        Arguments
        ---------
        device : str or torch.device

        Returns
        -------
        self
        """
        self.teacher.to(device)
        return self

    def teacher_targets(self, brain, batch, stage):
        """Runs the teacher; returns its outputs and one capture per site."""
        records = [_Capture() for _ in self.paths]
        handles = []
        for record, attention in zip(records, self.teacher_attentions):
            handles.append(
                attention.register_forward_pre_hook(
                    functools.partial(_capture_input, record), with_kwargs=True
                )
            )
            handles.append(
                attention.register_forward_hook(functools.partial(_capture_output, record))
            )
        self.teacher.eval()
        try:
            with torch.no_grad():
                outputs = brain.teacher_forward(self.teacher, batch, stage)
        finally:
            for handle in handles:
                handle.remove()
        if not isinstance(outputs, ModelOutputs):
            raise TypeError(
                "teacher_forward must return cald_brain.distill.ModelOutputs, got "
                f"{type(outputs).__name__}."
            )
        for path, record in zip(self.paths, records):
            if record.calls != 1 or not torch.is_tensor(record.output):
                raise ValueError(
                    f"Attention transfer: the teacher's attention '{path}' ran "
                    f"{record.calls} times in one forward (expected once, "
                    "returning a tensor first)."
                )
        return outputs, records

    def __call__(self, brain, batch, stage):
        """Teacher-forced loss of every converted layer on one batch.

        Arguments
        ---------
        brain : DistillBrain
            Gives ``teacher_forward`` (the recipe's hook).
        batch : Any
            A training batch.
        stage : speechbrain.Stage
            ``Stage.TRAIN``.

        Returns
        -------
        outputs : TransferOutputs
        """
        outputs, records = self.teacher_targets(brain, batch, stage)
        errors = []
        for path, adapter, record in zip(self.paths, self.adapters, records):
            target = record.output
            if target.dim() != 3:
                raise ValueError(
                    f"Attention transfer: the teacher's attention '{path}' "
                    f"returned a tensor of shape {tuple(target.shape)}; expected "
                    "[batch, time, channels]."
                )
            try:
                mask = frame_mask(
                    outputs.mask, target.shape[0], target.shape[1], target.device
                )
            except ValueError as err:
                raise ValueError(
                    f"Attention transfer, '{path}': the frame mask of the "
                    f"teacher's outputs does not fit its attention: {err}"
                ) from err
            with _only_mixer_gets_grads(adapter):
                prediction = adapter(*record.args, **record.kwargs)
            if isinstance(prediction, (tuple, list)):
                prediction = prediction[0]
            if prediction.shape != target.shape:
                raise ValueError(
                    f"Attention transfer, '{path}': the student's adapter returned "
                    f"{tuple(prediction.shape)}, the teacher's attention "
                    f"{tuple(target.shape)}."
                )
            errors.append(relative_error(prediction, target, mask))
        errors = torch.stack(errors)
        return TransferOutputs(
            loss=errors.mean(), layer_errors=errors.detach(), paths=list(self.paths)
        )
