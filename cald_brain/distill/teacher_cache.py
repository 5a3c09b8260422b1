"""Teacher-output cache for fixed teachers (hparam ``cache_teacher``).

A fixed teacher in eval mode (target and hybrid guidance) gives the same
outputs for an utterance every epoch, so running it again is wasted time:
measured on the Whisper encoder (offline-assets section 6), caching the
teacher's per-layer hidden states made a guided step cost what an unguided
one does. :class:`TeacherOutputCache` keeps, per batch item id (SpeechBrain's
``PaddedBatch.id``), the teacher's detached hidden states and 3-D logits cut
to the item's real length, its 2-D logits and its real length, on the CPU;
a later batch made of cached items is re-padded to the student's own
padded lengths.

Only valid when the teacher's outputs for an item do not depend on the
batch it is in nor on random draws: no dropout (``teacher_mode: eval``), no
augmentation inside the recipe's ``teacher_forward``, and a model whose
real frames do not see the padding (e.g. Wav2Vec2 with a group-norm
feature encoder normalises over the padded waveform, so cached and fresh
outputs then differ slightly). ``ModelOutputs.predictions`` is not cached
(the distillation terms do not read the teacher's).

Authors
 * cald-brain developers 2026
"""

import torch

from cald_brain.distill.losses import frame_mask
from cald_brain.distill.outputs import ModelOutputs


def batch_ids(batch):
    """The item ids of a batch (``batch.id`` of a SpeechBrain PaddedBatch).

    Arguments
    ---------
    batch : Any

    Returns
    -------
    ids : list

    Example
    -------
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> items = [{"id": "a", "x": torch.ones(2)}, {"id": "b", "x": torch.ones(3)}]
    >>> batch_ids(PaddedBatch(items))
    ['a', 'b']
    """
    ids = getattr(batch, "id", None)
    if ids is None:
        raise ValueError(
            "cache_teacher needs batches whose items carry ids (SpeechBrain's "
            "PaddedBatch `.id`: add 'id' to the DynamicItemDataset's output "
            f"keys); got a {type(batch).__name__} without `.id`."
        )
    return list(ids)


def _as_list(tensors):
    if tensors is None:
        return None
    if torch.is_tensor(tensors):
        return list(tensors.unbind(0))
    return list(tensors)


def _pad(pieces, time, device):
    """Stacks ``[length_i, ...]`` tensors into ``[batch, time, ...]`` (zeros after)."""
    first = pieces[0]
    out = first.new_zeros((len(pieces), time) + tuple(first.shape[1:]), device=device)
    for i, piece in enumerate(pieces):
        out[i, : piece.shape[0]] = piece.to(device)
    return out


class TeacherOutputCache:
    """Per-item store of a fixed teacher's outputs, re-padded on lookup.

    Example
    -------
    >>> cache = TeacherOutputCache()
    >>> hidden = torch.arange(12.0).view(2, 3, 2)
    >>> mask = torch.tensor([[True, True, True], [True, False, False]])
    >>> cache.store(["a", "b"], ModelOutputs(None, [hidden], mask, torch.ones(2, 4)))
    >>> cache.has(["b", "a"]), cache.has(["c"])
    (True, False)
    >>> student = ModelOutputs(None, [torch.zeros(2, 4, 2)])
    >>> out = cache.lookup(["b", "a"], student, "cpu")
    >>> out.hidden_states[0][0].tolist()
    [[6.0, 7.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    >>> out.mask.tolist()
    [[True, False, False, False], [True, True, True, False]]
    """

    def __init__(self):
        self.items = {}

    def __len__(self):
        return len(self.items)

    def has(self, ids):
        """Whether every id is cached.

        Arguments
        ---------
        ids : list

        Returns
        -------
        bool
        """
        return all(i in self.items for i in ids)

    def clear(self):
        """Forgets everything (frees the memory)."""
        self.items = {}

    def store(self, ids, outputs):
        """Stores the outputs of the items not cached yet.

        Arguments
        ---------
        ids : list
            One id per batch item.
        outputs : ModelOutputs
            The teacher's detached outputs on that batch.
        """
        hidden = _as_list(outputs.hidden_states)
        single_head = torch.is_tensor(outputs.logits)
        logits = [outputs.logits] if single_head else _as_list(outputs.logits)
        ref = hidden[0] if hidden else next((l for l in logits or [] if l.dim() == 3), None)
        if ref is not None:
            batch, time = ref.shape[0], ref.shape[1]
            mask = frame_mask(outputs.mask, batch, time, ref.device)
            lengths = mask.sum(1)
            steps = torch.arange(time, device=mask.device)
            if not torch.equal(steps.unsqueeze(0) < lengths.unsqueeze(1), mask):
                raise ValueError(
                    "cache_teacher needs right-padded frame masks (real frames "
                    "first); the teacher's mask has padding elsewhere."
                )
            lengths = lengths.tolist()
        else:
            batch, lengths = logits[0].shape[0], None
        if len(ids) != batch:
            raise ValueError(
                f"cache_teacher: the batch has {len(ids)} ids but the teacher's "
                f"outputs hold {batch} items."
            )
        for i, item in enumerate(ids):
            if item in self.items:
                continue
            length = None if lengths is None else int(lengths[i])
            self.items[item] = {
                "length": length,
                "hidden": None
                if hidden is None
                else [h[i, :length].detach().cpu() for h in hidden],
                "logits": None
                if logits is None
                else [
                    (l[i, :length] if l.dim() == 3 else l[i]).detach().cpu()
                    for l in logits
                ],
                "single_head": single_head,
            }

    def lookup(self, ids, like, device):
        """The cached outputs of ``ids``, padded like the student's outputs.

        Arguments
        ---------
        ids : list
            Every one cached (see :meth:`has`).
        like : ModelOutputs
            The student's outputs on the same batch: their padded lengths
            (hidden states, 3-D logits) are used.
        device : str or torch.device
            Where the returned tensors go.

        Returns
        -------
        outputs : ModelOutputs
            Hidden states, logits and a boolean frame mask; ``predictions``
            is None.
        """
        entries = [self.items[i] for i in ids]
        lengths = [e["length"] for e in entries]
        like_hidden = _as_list(like.hidden_states) or []
        like_logits = (
            [like.logits] if torch.is_tensor(like.logits) else _as_list(like.logits) or []
        )

        def padded_length(reference):
            longest = max(lengths)
            time = reference.shape[1] if reference is not None else longest
            if longest > time:
                worst = ids[lengths.index(longest)]
                raise ValueError(
                    f"cache_teacher: the cached teacher outputs of item {worst!r} "
                    f"have {longest} frames but the student's batch only {time}; "
                    "item ids must name the same utterance in every epoch."
                )
            return time

        mask = hidden = logits = None
        if entries[0]["length"] is not None:
            time = padded_length(like_hidden[0] if like_hidden else None)
            steps = torch.arange(time, device=device)
            mask = steps.unsqueeze(0) < torch.tensor(lengths, device=device).unsqueeze(1)
        if entries[0]["hidden"] is not None:
            time = padded_length(like_hidden[0] if like_hidden else None)
            hidden = [
                _pad([e["hidden"][k] for e in entries], time, device)
                for k in range(len(entries[0]["hidden"]))
            ]
        if entries[0]["logits"] is not None:
            logits = []
            for k in range(len(entries[0]["logits"])):
                pieces = [e["logits"][k] for e in entries]
                if pieces[0].dim() == 2:  # [time, classes]: frame-level head
                    ref = like_logits[k] if k < len(like_logits) else None
                    ref = ref if ref is not None and ref.dim() == 3 else None
                    logits.append(_pad(pieces, padded_length(ref), device))
                else:
                    logits.append(torch.stack(pieces).to(device))
            if entries[0]["single_head"]:
                logits = logits[0]
        return ModelOutputs(predictions=None, hidden_states=hidden, mask=mask, logits=logits)
