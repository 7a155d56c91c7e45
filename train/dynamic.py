"""Training a dynamic-precision model (modes dqt and dqnet): phases, noise, learning rates, loss.

`DynamicTraining` drives one run's steps 0 .. steps-1 (train.fit's module doc and
docs/training.md give the method):

* steps [0, warmup): the backbone alone at the static width ``warmup_bits``;
* steps [warmup, freeze): the controller picks per image and layer the argmax of its logits
  plus Gumbel noise scaled by sigma, annealed linearly from ``noise`` to 0; it learns from
  measured alternatives (`controller_loss`: for ``probes`` layers per step, each image's loss
  at every other candidate) priced by the budget's Lagrange multipliers (train.budget), which
  move by dual ascent on the realized costs after every step; it has its own learning rate
  ``ctrl_lr`` on a cosine over these steps;
* at step freeze: the stem and controller freeze and the choices are calibrated to the budget
  on the training images (`Budget.calibrate`); steps [freeze, steps) train the backbone on
  exactly the choices inference makes.

Every ``aux_every``-th step with alpha > 0 adds alpha times the loss of the whole network at
one fixed width, the widths of ``aux_bits`` taken in turn (``aux_loss``: CE against the labels,
or against the dynamic path's predicted distribution, distilling it into the fixed widths).
It runs with `frozen_stats`, so the running batch-norm statistics stay those of the dynamic
path inference takes: the consistency term over the widths inference can take, at one pass
per ``aux_every`` steps instead of |K'| per step (in the warm-up, a pass at the warm-up width
itself is left out: it would repeat the main pass).
"""

import math

import torch
import torch.nn.functional as F

from .budget import COST_KINDS, Budget
from .data import to_master_codes

__all__ = ["DynamicTraining", "PROBE_IMAGES"]

#: Images of each batch whose alternatives are measured (the batch's first, a random sample):
#: the controller's regression needs many steps more than many images per step, and the
#: measurements are the costliest part of a controller step.
PROBE_IMAGES = 32


def _ints(text):
    return [int(item) for item in str(text).split(",")]


class DynamicTraining:
    """The dynamic-mode schedule and loss of one run (`config`: a resolved TrainConfig)."""

    def __init__(self, model, config, steps):
        self.model, self.config, self.steps = model, config, steps
        self.warm_end = round(config.warmup * steps)
        self.freeze_at = round(config.freeze * steps)
        self.aux_bits = _ints(config.aux_bits)
        kinds = COST_KINDS if config.cost == "both" else (config.cost,)
        self.budget = Budget(model, config.target, kinds, config.dual_lr)
        self.calibration_offset = self.calibrated_costs = None
        self._costs = None

    # -- schedule --------------------------------------------------------------------------
    def phase(self, step):
        if step < self.warm_end:
            return "warmup"
        return "controller" if step < self.freeze_at else "fine-tune"

    def noise(self, step):
        """Gumbel noise scale: `noise` at the controller's first step, 0 at the freeze."""
        span = max(self.freeze_at - self.warm_end, 1)
        return self.config.noise * max(0.0, 1.0 - (step - self.warm_end) / span)

    def optimizer(self):
        """(AdamW, LambdaLR): backbone at lr on a cosine over the run, controller at ctrl_lr
        on a cosine over the controller phase (0 outside it)."""
        model = self.model
        controller = [p for m in (model.ctrl_fc1, model.ctrl_fc2) for p in m.parameters()]
        ids = {id(p) for p in controller}
        backbone = [p for p in model.parameters() if id(p) not in ids]
        if self.config.ctrl_hidden == "fixed":
            fixed = {id(model.ctrl_fc1.weight), id(model.ctrl_fc1.bias)}
            controller = [p for p in controller if id(p) not in fixed]
            for parameter in (model.ctrl_fc1.weight, model.ctrl_fc1.bias):
                parameter.requires_grad_(False)
        optimizer = torch.optim.AdamW(
            [{"params": backbone, "lr": self.config.lr},
             {"params": controller, "lr": self.config.ctrl_lr}],
            weight_decay=self.config.weight_decay)
        steps, start, end = self.steps, self.warm_end, self.freeze_at

        def backbone_lr(step):
            return 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))

        def controller_lr(step):
            if not start <= step < end:
                return 0.0
            return 0.5 * (1 + math.cos(math.pi * (step - start) / (end - start)))
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                            [backbone_lr, controller_lr])

    # -- steps -----------------------------------------------------------------------------
    def loss(self, codes, target, step):
        """(loss, model result) of one training batch at `step`."""
        model, config = self.model, self.config
        phase = self.phase(step)
        self._costs = None
        if phase == "warmup":
            result = model(codes, bits=config.warmup_bits)
        elif phase == "controller":
            result = model(codes, noise=self.noise(step), offset=self.offset(), record=True)
        else:
            result = model(codes)
        loss = F.cross_entropy(result["logits"], target)
        if phase == "controller":
            self._costs = self.budget.costs(result["choice"])
            loss = loss + self.controller_loss(result, target, step)
        bits = self.aux_bits[(step // config.aux_every) % len(self.aux_bits)]
        repeat = phase == "warmup" and bits == config.warmup_bits      # the main pass again
        if config.alpha > 0 and step % config.aux_every == 0 and not repeat:
            with model.frozen_stats():
                fixed = model(codes, bits=bits)["logits"]
            if config.aux_loss == "ce":
                aux = F.cross_entropy(fixed, target)
            else:                   # distill the dynamic path's predictions into the fixed one
                teacher = F.softmax(result["logits"].detach(), dim=1)
                aux = F.cross_entropy(fixed, teacher)
            loss = loss + config.alpha * aux
        return loss, result

    def probed_layers(self, step):
        """The controlled layers whose alternatives are measured at `step`, in turn."""
        count = len(self.model.controlled)
        return sorted({(step * self.config.probes + j) % count
                       for j in range(self.config.probes)})

    def controller_loss(self, result, target, step):
        """The controller's regression loss on the probed layers.

        The controller's logit for layer l and candidate k estimates -(Q_lk - mean_k Q_lk) for
        the image, Q_lk being the image's loss with layer l at candidate k and the other layers
        as chosen; it learns that from measurements: for each probed layer,
        `QResNet.counterfactual` runs the batch's first PROBE_IMAGES images (a random sample)
        at every candidate. The loss is the Huber loss between logits and those targets. Choices take
        the argmax of logits - sum_j lambda_j price_j (`offset`): the loss a width saves
        against what its bits cost at the budget's current prices, image by image.

        (Neither a straight-through gradient <dL/dy, y_k>, which sees only the first-order
        effect of a width's quantization noise and so averages out, nor a policy gradient,
        which vanishes once the softmax is confident about a stale choice, learned which
        widths an image needs; a regression on measured losses does not saturate.)
        """
        layers = self.probed_layers(step)
        images = min(PROBE_IMAGES, len(target))             # the batch is in random order
        losses = self.measure(target, layers, images)
        advantage = losses.mean(dim=2, keepdim=True) - losses
        return F.huber_loss(result["controller_logits"][:images, layers], advantage,
                            reduction="sum") / images

    def measure(self, target, layers, images):
        """(images, len(layers), K) losses of the batch's first `images` images with layer l
        at candidate k and the others as chosen: `counterfactual` on every candidate at once
        (the rows repeated K times), so the K losses of an image come from one computation."""
        candidates = len(self.model.config.candidates)
        rows = torch.arange(images).repeat(candidates)
        which = torch.arange(candidates).repeat_interleave(images)
        losses = []
        for layer in layers:
            logits = self.model.counterfactual(layer, which, rows)
            loss = F.cross_entropy(logits, target[rows], reduction="none")
            losses.append(loss.view(candidates, images).t())
        return torch.stack(losses, dim=1)

    def offset(self):
        """(L, K) added to the controller's logits when it chooses: -sum_j lambda_j price_j."""
        return -sum(self.budget.multipliers[kind] * price
                    for kind, price in self.budget.prices.items())

    def after_step(self):
        """Dual ascent on the budget from the step's realized costs (controller phase)."""
        if self._costs is not None:
            self.budget.update(self._costs)

    def before_step(self, step, images):
        """When the controller starts, centre its hidden layer on uint8 `images` (the
        training set); at the freeze step, freeze the stem and controller and calibrate the
        budget on them."""
        if step == self.warm_end and step < self.freeze_at:
            self.centre_hidden(images)
        if step == self.freeze_at and self.calibration_offset is None:
            self.freeze(images)

    def centre_hidden(self, images, count=2000):
        """Set each hidden unit's bias to minus the median of its pre-activation over the
        first `count` images: every ReLU is then active on half of them. (Zero biases on
        the non-negative pooled features leave units on for almost all images or for none.)
        """
        model = self.model
        training = model.training
        model.eval()
        with torch.no_grad():
            codes = to_master_codes(torch.from_numpy(images[:count]), model.master_bits)
            stem = model.stem.run(model.input_activation(codes), model.master_bits)
            pooled = model.controller_features(stem)
            hidden = model.ctrl_fc1(*pooled, model.master_bits) - model.ctrl_fc1.bias
            model.ctrl_fc1.bias.copy_(-hidden.median(dim=0).values)
        model.train(training)

    def freeze(self, images, batch_size=1000):
        model = self.model
        model.freeze_front()
        training = model.training
        model.eval()
        logits = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                codes = to_master_codes(torch.from_numpy(images[start:start + batch_size]),
                                        model.master_bits)
                stem = model.stem.run(model.input_activation(codes), model.master_bits)
                logits.append(model.controller(stem))
        logits = torch.cat(logits)
        self.calibration_offset = self.budget.calibrate(model, logits)
        self.calibrated_costs = self.budget.mean_costs(logits, self.calibration_offset)
        model.train(training)

    def state_dict(self):
        """What a resumed run needs besides the model and optimizer (plain JSON types)."""
        return {"multipliers": dict(self.budget.multipliers),
                "calibration_offset": self.calibration_offset,
                "calibrated_costs": self.calibrated_costs}

    def load_state_dict(self, state):
        """Restore `state_dict()`; a calibrated run's model (whose controller bias already
        holds the offset) gets its front frozen again."""
        self.budget.multipliers = dict(state["multipliers"])
        self.calibration_offset = state["calibration_offset"]
        self.calibrated_costs = state["calibrated_costs"]
        if self.calibration_offset is not None:
            self.model.freeze_front()

    def summary(self, step):
        """Schedule state for the training log and history."""
        phase = self.phase(max(step - 1, 0))
        entry = {"phase": phase,
                 "noise": self.noise(step - 1) if phase == "controller" else 0.0}
        entry.update({f"lambda_{kind}": value
                      for kind, value in self.budget.multipliers.items()})
        return entry
