"""DistillBrain's optimizer step: the schedule's first rate, clipping over every group.

Two departures from ``speechbrain.Brain`` that the converted students need
(measured on Whisper tiny.en -> BiMamba2, see the SLURP README):

* SpeechBrain steps ``lr_annealing`` *after* each optimizer step, so the
  first step ran at the optimizer's initial (peak) rate, before any warm-up;
  an AdamW step at the peak rate scrambled the pretrained weights around the
  fresh mixers. The first step must use the schedule's first rate.
* SpeechBrain clips only ``param_groups[0]``; with per-group rates
  (``lr_scales``) the other groups went unclipped.
"""

import pytest
import torch
from speechbrain.nnet.schedulers import WarmAndExpDecayLRSchedule

import toy_recipe


def _grad_norm(params):
    return float(torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))


class TwoGroupBrain(toy_recipe.ToyBrain):
    """The toy brain with its parameters in two groups; records, before each
    main optimizer step, every group's rate and the gradients' total norm."""

    def init_optimizers(self):
        super().init_optimizers()
        params = [p for p in self.modules.parameters() if p.requires_grad]
        half = len(params) // 2
        lr = self.hparams.lr
        self.optimizer = torch.optim.AdamW(
            [{"params": params[:half], "lr": lr}, {"params": params[half:], "lr": lr}]
        )
        self.optimizers_dict["opt_class"] = self.optimizer
        self.rates, self.norms, self.group_norms = [], [], []

        def record(opt, args, kwargs):
            self.rates.append([g["lr"] for g in opt.param_groups])
            self.norms.append(_grad_norm([p for g in opt.param_groups for p in g["params"]]))
            self.group_norms.append([_grad_norm(g["params"]) for g in opt.param_groups])

        self.optimizer.register_step_pre_hook(record)


@pytest.fixture(scope="module")
def two_group_run(run_mode):
    schedule = WarmAndExpDecayLRSchedule(lr=0.002, n_warmup_steps=4, total_steps=12, decay_factor=0.5)
    brain = run_mode(
        "unguided",
        run_opts={"max_grad_norm": 1e-3},
        hparams_update={"lr_annealing": schedule},
        brain_class=TwoGroupBrain,
    )
    return brain


def test_first_step_uses_the_schedules_first_rate_not_the_peak(two_group_run):
    rates = [r[0] for r in two_group_run.rates]
    assert len(rates) == 12
    # warm-up from zero over 4 steps, then decay: never the peak on step 1
    assert rates[:4] == pytest.approx([0.0, 0.0005, 0.001, 0.0015])
    assert rates[4] == pytest.approx(0.002)
    assert all(b <= a + 1e-12 for a, b in zip(rates[4:], rates[5:]))


def test_gradients_of_every_group_are_clipped_together(two_group_run):
    brain = two_group_run
    # the toy's gradients are far above 1e-3: clipping acted on every step
    assert all(n == pytest.approx(1e-3, rel=1e-3) for n in brain.norms)
    # and not only on the first group (SpeechBrain's own step clips group 0 only)
    assert all(g[1] > 0 for g in brain.group_norms)
    assert all(g[0] < 1e-3 * (1 + 1e-3) and g[1] < 1e-3 * (1 + 1e-3) for g in brain.group_norms)
