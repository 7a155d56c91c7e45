"""The bit budget of a dynamic model: per-image costs, Lagrange multipliers, calibration.

A budget of B bits is one or two constraints on the mean over images of a per-image cost,
each normalized so that 1 means "at the budget":

* ``bits``: the mean over controlled layers of the image's bit-width b, against B;
* ``bitops``: the MAC-weighted mean over controlled layers of b^2 (the image's BitOPs in the
  controlled layers over their MACs), against B^2: the BitOPs of every layer at B bits.

Per image and constraint j the cost is sum_l sum_k choice_lk price_jlk, with the prices
price_bits = b_k / (L B) and price_bitops = (MACs_l / sum MACs) b_k^2 / B^2. The Lagrangian of
training is mean_i (CE_i + sum_j lambda_j cost_ij): the controller's objective charges each
candidate sum_j lambda_j price_jlk against the loss it saves (train.dynamic), and each
multiplier follows dual ascent on the costs of the choices the network ran,
lambda_j <- max(0, lambda_j + step (mean cost_j - 1)). A multiplier is the price of a bit that
makes the average meet the budget; each image still trades its own loss against it, so hard
images can buy bits that easy ones give up.

`calibrate` then hits the budget on a set of images exactly: it finds the smallest offset d with
every constraint met when the controller picks argmax_k(logit_lk - d p_lk), p = sum_j price_j,
and folds -d p into the bias of the controller's last layer (exported like any other bias).
"""

import torch

__all__ = ["COST_KINDS", "Budget"]

COST_KINDS = ("bits", "bitops")


class Budget:
    """Constraints `kinds` (a subset of COST_KINDS) at `target` bits for a dynamic QResNet."""

    def __init__(self, model, target, kinds, step=0.05):
        for kind in kinds:
            if kind not in COST_KINDS:
                raise ValueError(f"unknown cost {kind!r}; choose from {', '.join(COST_KINDS)}")
        self.target, self.kinds, self.step = float(target), tuple(kinds), float(step)
        candidates = torch.tensor(model.config.candidates, dtype=torch.float32)
        macs = torch.tensor([layer.macs for layer in model.controlled], dtype=torch.float32)
        layers = len(macs)
        prices = {"bits": (candidates / (layers * self.target)).expand(layers, -1),
                  "bitops": (macs / macs.sum()).view(-1, 1) * candidates ** 2 / self.target ** 2}
        self.prices = {kind: prices[kind] for kind in self.kinds}
        self.multipliers = {kind: 0.0 for kind in self.kinds}

    def costs(self, choice):
        """{kind: (N,) normalized per-image cost} of a choice (N, L, K) (one-hot or soft)."""
        return {kind: (choice * price).sum(dim=(1, 2)) for kind, price in self.prices.items()}

    def update(self, costs):
        """One dual-ascent step from the batch's realized costs."""
        for kind, cost in costs.items():
            excess = float(cost.detach().mean()) - 1.0
            self.multipliers[kind] = max(0.0, self.multipliers[kind] + self.step * excess)

    def price(self):
        """(L, K): sum of the constraints' prices, the direction `calibrate` moves along."""
        return sum(self.prices.values())

    def mean_costs(self, logits, offset=0.0):
        """{kind: mean normalized cost} of the argmax choices of logits - offset * price."""
        price = self.price()
        choice = torch.nn.functional.one_hot((logits - offset * price).argmax(dim=-1),
                                             price.shape[1]).to(price.dtype)
        return {kind: float(cost.mean()) for kind, cost in self.costs(choice).items()}

    def _worst(self, logits, offset):
        return max(self.mean_costs(logits, offset).values())

    def calibrate(self, model, logits, iterations=60):
        """Fold the smallest offset that meets the budget on controller `logits` (N, L, K)
        into model.ctrl_fc2's bias; return the offset (0 changes nothing)."""
        logits = logits.detach().float()
        low, high = -1.0, 1.0
        while self._worst(logits, high) > 1.0:
            high *= 2
            if high > 1e6:
                raise ValueError("the budget cannot be met: even the cheapest choices exceed it")
        while self._worst(logits, low) <= 1.0 and low > -1e6:
            low *= 2
        if self._worst(logits, low) <= 1.0:
            offset = low                  # every choice fits: spend the most the logits allow
        else:
            for _ in range(iterations):
                middle = (low + high) / 2
                if self._worst(logits, middle) <= 1.0:
                    high = middle
                else:
                    low = middle
            offset = high
        with torch.no_grad():
            model.ctrl_fc2.bias.sub_(offset * self.price().flatten())
        return offset
