"""The CALD distillation engine: losses, guides (one per mode) and DistillBrain.

A recipe subclasses :class:`DistillBrain`, implements ``forward_model`` and
``compute_task_loss``, and picks its mode with the ``guide`` hparam; how the
new mixers start is the ``mixer_init`` hparam (:mod:`cald_brain.distill.mixer_init`).

Importing this package does not import :mod:`cald_brain.nnet` nor
:mod:`cald_brain.convert`; :func:`build_student` imports the converter when it
converts.
"""

from cald_brain.distill.brain import DistillBrain, LossStats  # noqa: F401
from cald_brain.distill.checkpointing import (  # noqa: F401
    CompletionMarker,
    RandomState,
    find_checkpoint,
    load_state_dict_checked,
    unwrap_module,
)
from cald_brain.distill.guides import (  # noqa: F401
    Guide,
    HybridCutoff,
    NoGuide,
    TargetGuide,
    TrajectoryGuide,
    WaypointGuide,
)
from cald_brain.distill.losses import (  # noqa: F401
    LayerwiseDistillationLoss,
    OutputDistillationLoss,
    frame_mask,
    layer_distance,
    output_distillation_loss,
    resolve_layer_map,
)
from cald_brain.distill.mixer_init import (  # noqa: F401
    MIXER_INITS,
    AttentionTransfer,
    TransferOutputs,
    find_mixers,
    zero_output_projections,
)
from cald_brain.distill.outputs import DistillForward, ModelOutputs  # noqa: F401
from cald_brain.distill.student import build_student  # noqa: F401
from cald_brain.distill.teacher_cache import TeacherOutputCache  # noqa: F401
from cald_brain.distill.waypoints import (  # noqa: F401
    Waypoint,
    WaypointSaver,
    read_waypoint_manifest,
    waypoint_for_step,
)
