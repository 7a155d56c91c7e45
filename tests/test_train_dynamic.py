"""Dynamic-precision training: per-image widths, the controller's gradient, the budget, the
schedule, and the fixed-width and choice reports."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.budget import Budget
from train.data import load_dataset
from train.dynamic import DynamicTraining
from train.fit import TrainConfig, resolve
from train.metrics import choice_report, fixed_width_report, recalibrated_bn
from train.model import QLayer, build_model


def _tiny(mode="dqt", **extra):
    torch.manual_seed(5)
    return build_model(dict(image_size=8, stem_stride=1, width=4, mode=mode, **extra))


@pytest.mark.parametrize("mode", ["dqt", "dqnet"])
def test_per_image_widths(mode):
    torch.manual_seed(0)
    layer = QLayer("conv2d", 3, 5, kernel=3, padding=1, norm=True, out="relu", mode=mode,
                   master_bits=8)
    layer.eval()
    candidates = (2, 4, 8)
    x = torch.randint(0, 256, (9, 3, 6, 6)).float()
    scale = torch.tensor(0.01)
    index = torch.tensor([0, 2, 1, 1, 0, 2, 2, 0, 1])
    y = layer(x, scale, (candidates, index))
    for i in range(9):                          # each image as if it ran alone at its width
        alone = layer(x[i:i + 1], scale, candidates[int(index[i])])
        assert torch.allclose(y[i:i + 1], alone, rtol=1e-5, atol=1e-3)


def test_per_width_batch_norm_normalizes_each_image_with_its_width_s_statistics():
    from train.data import to_master_codes
    model = _tiny()
    codes = to_master_codes(torch.from_numpy(load_dataset("digits", "train")[0][:40]), 8)
    trained = {name: buffer.clone() for name, buffer in model.named_buffers()}
    layer, candidates = model.blocks[0].conv1, model.config.candidates
    with torch.no_grad(), model.per_width_bn(codes):
        stem = model.stem.run(model.input_activation(codes), 8)    # the layer's input
        norm, layer.norm = layer.norm, None
        before_norm = {b: layer(*stem, b) for b in candidates}     # every image at width b
        layer.norm = norm
        for b, y in before_norm.items():
            mean, var = layer.width_stats[b]
            assert torch.allclose(mean, y.mean((0, 2, 3)), atol=1e-5)
            assert torch.allclose(var, y.var((0, 2, 3)), rtol=1e-4)
        index = torch.arange(len(codes)) % len(candidates)
        out = layer(*stem, (candidates, index))
        for i in range(len(codes)):
            b = candidates[int(index[i])]
            alone = F.batch_norm(before_norm[b][i:i + 1], *layer.width_stats[b],
                                 norm.weight.abs(), norm.bias, training=False, eps=norm.eps)
            assert torch.allclose(out[i:i + 1], alone, atol=1e-5)
    assert all(layer.width_stats is None for layer in model.controlled)
    assert all(torch.equal(buffer, trained[name]) for name, buffer in model.named_buffers())
    with pytest.raises(ValueError, match="dynamic model"):
        with _tiny("static").per_width_bn(codes):
            pass


def test_measuring_advantages_leaves_every_running_statistic_alone():
    # counterfactual's own frozen_stats, nested in measure_advantages', once switched
    # tracking back on, and the next batch's stem pass moved its running statistics.
    from train.diagnose import measure_advantages
    model = _tiny()
    images, labels = load_dataset("digits", "test")
    trained = {name: buffer.clone() for name, buffer in model.named_buffers()}
    measure_advantages(model, images[:40], labels[:40], batch_size=20)
    assert all(torch.equal(buffer, trained[name]) for name, buffer in model.named_buffers())


def test_counterfactual_is_what_one_image_alone_would_get():
    model = _tiny()
    model.train()
    codes = torch.from_numpy(load_dataset("digits", "train")[0][:24]).long()
    norm = model.blocks[0].conv1.norm
    before = norm.running_mean.clone()
    with torch.no_grad():
        model.ctrl_fc2.weight.normal_()
        result = model(codes, noise=1.0, record=True)
        recorded = norm.running_mean.clone()
        chosen = result["bits"]
        rows = torch.tensor([1, 5, 6])
        for layer in (0, 4, 7):
            # Replaying the recorded statistics, the chosen width gives the recorded logits ...
            same = model.counterfactual(layer, chosen[rows, layer].tolist()[0], rows[:1])
            assert torch.allclose(same, result["logits"][1:2], atol=1e-4)
            # ... and another width changes only the images asked about, each on its own.
            other = model.counterfactual(layer, 2, rows)
            for j, row in enumerate(rows.tolist()):
                alone = model.counterfactual(layer, 2, torch.tensor([row]))
                assert torch.allclose(other[j:j + 1], alone, atol=1e-4)
    # The recorded pass updated the running statistics, the counterfactuals did not.
    assert not torch.equal(before, recorded) and torch.equal(recorded, norm.running_mean)


def test_controller_learns_the_measured_losses():
    config, model_config = resolve(TrainConfig(dataset="digits", mode="dqt", width=4,
                                               probes=3))
    model = build_model(model_config)
    model.train()
    training = DynamicTraining(model, config, 10)
    images, labels = load_dataset("digits", "train")
    codes, target = torch.from_numpy(images[:48]).long(), torch.from_numpy(labels[:48])
    result = model(codes, noise=1.0, record=True)
    per_image = F.cross_entropy(result["logits"], target, reduction="none").detach()
    layers = training.probed_layers(1)
    assert layers == [3, 4, 5] and training.probed_layers(2) == [0, 6, 7]
    losses = training.measure(target, layers, 48)
    index = result["choice"].argmax(-1)
    for j, layer in enumerate(layers):
        for row in (0, 17, 40):
            k = int(index[row, layer])
            assert torch.allclose(losses[row, j, k], per_image[row], atol=1e-4)   # as recorded
            other = (k + 1) % 3
            alone = model.counterfactual(layer, model.config.candidates[other],
                                         torch.tensor([row]))
            assert torch.allclose(losses[row, j, other],
                                  F.cross_entropy(alone, target[row:row + 1]), atol=1e-4)
    # Only the controller learns from it, and a few steps on one batch fit the targets.
    loss = training.controller_loss(result, target, 1)
    loss.backward()
    assert all(p.grad is None for p in model.blocks.parameters())
    assert model.ctrl_fc2.weight.grad.abs().sum() > 0
    optimizer = torch.optim.Adam(model.ctrl_fc2.parameters(), lr=1e-2)
    first = loss.item()
    for _ in range(30):
        optimizer.zero_grad()
        logits = model.controller(model.stem.run(model.input_activation(codes), 8))
        result["controller_logits"] = logits
        loss = training.controller_loss(result, target, 1)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.8 * first


@pytest.mark.parametrize("aux_loss", ["ce", "distill"])
def test_fixed_width_pass_every_other_step(aux_loss, monkeypatch):
    config, model_config = resolve(TrainConfig(dataset="digits", mode="dqt", width=4,
                                               aux_loss=aux_loss, aux_every=2,
                                               candidates="2,4,8", aux_bits="2,4,8"))
    model = build_model(model_config)
    model.train()
    training = DynamicTraining(model, config, 100)
    images, labels = load_dataset("digits", "train")
    codes, target = torch.from_numpy(images[:32]).long(), torch.from_numpy(labels[:32])
    widths = []
    forward = model.forward

    def spy(codes, bits=None, **options):
        widths.append(bits)
        return forward(codes, bits=bits, **options)
    monkeypatch.setattr(model, "forward", spy)
    for step in list(range(6)) + [20, 21, 22]:
        training.loss(codes, target, step)
    # Warm-up at 4 bits; every second step one fixed width of K' = {2, 4, 8} in turn, but not
    # 4 again in the warm-up; then the controller phase (pass 10: 4 bits, pass 11: 8 bits).
    assert widths == [4, 2, 4, 4, 4, 4, 8, 4, None, 4, None, None, 8]


def test_noise_zero_trains_on_the_inference_choices():
    model = _tiny()
    codes = torch.from_numpy(load_dataset("digits", "test")[0][:32]).long()
    with torch.no_grad():
        model.ctrl_fc2.weight.normal_()         # choices that differ between images
    model.freeze_front()                        # the stem's BN as in inference
    model.train()
    offset = torch.zeros(len(model.controlled), 3)
    trained = model(codes, noise=0.0, offset=offset, record=True)["bits"]
    model.eval()
    assert torch.equal(trained, model(codes)["bits"])
    assert len({tuple(row) for row in trained.tolist()}) > 1
    offset[:, 0] = 1e6                          # an offset moves every choice
    assert torch.all(model(codes, offset=offset)["bits"] == 2)
    model.train()
    noisy = model(codes, noise=5.0)["bits"]
    assert not torch.equal(noisy, trained)


def test_budget_costs_dual_ascent_and_calibration():
    model = _tiny()
    budget = Budget(model, 4.0, ("bits", "bitops"), step=0.5)
    layers = len(model.controlled)
    all_at = {b: F.one_hot(torch.full((2, layers), k), 3).float()
              for k, b in enumerate((2, 4, 8))}
    costs = budget.costs(all_at[4])
    assert torch.allclose(costs["bits"], torch.ones(2))
    assert torch.allclose(costs["bitops"], torch.ones(2))
    assert torch.allclose(budget.costs(all_at[8])["bitops"], torch.full((2,), 4.0))
    budget.update(budget.costs(all_at[8]))          # over budget: multipliers rise
    assert budget.multipliers == pytest.approx({"bits": 0.5, "bitops": 1.5})
    budget.update(budget.costs(all_at[2]))          # under: they fall ...
    assert budget.multipliers == pytest.approx({"bits": 0.25, "bitops": 1.125})
    budget.update(budget.costs(all_at[2]))          # ... never below 0
    assert budget.multipliers == pytest.approx({"bits": 0.0, "bitops": 0.75})
    # Calibration: random logits whose argmax spends too much, then exactly at the budget.
    torch.manual_seed(1)
    logits = torch.randn(500, layers, 3) + torch.tensor([0.0, 0.0, 1.0])
    assert max(budget.mean_costs(logits).values()) > 1
    before = model.ctrl_fc2.bias.detach().clone()
    offset = budget.calibrate(model, logits)
    assert offset > 0 and max(budget.mean_costs(logits, offset).values()) <= 1
    assert max(budget.mean_costs(logits, offset * 0.99).values()) > 1
    shift = (before - model.ctrl_fc2.bias.detach()).view(layers, 3)
    assert torch.allclose(shift, offset * budget.price())
    # Under budget: the offset goes negative and spends up to the budget.
    cheap = torch.randn(500, layers, 3) + torch.tensor([2.0, 0.0, 0.0])
    offset = Budget(model, 4.0, ("bits",)).calibrate(model, cheap)
    assert offset < 0


def test_schedule_phases_noise_and_learning_rates():
    config, model_config = resolve(TrainConfig(dataset="digits", mode="dqt", width=4,
                                               noise=2.0, warmup=0.2, freeze=0.8))
    assert config.candidates == "3,4,5" and config.warmup_bits == 4 and config.aux_bits == "4,5"
    model = build_model(model_config)
    training = DynamicTraining(model, config, 100)
    assert [training.phase(s) for s in (0, 19, 20, 79, 80, 99)] == [
        "warmup", "warmup", "controller", "controller", "fine-tune", "fine-tune"]
    assert training.noise(20) == 2.0 and training.noise(50) == 1.0 and training.noise(80) == 0
    optimizer, scheduler = training.optimizer()
    backbone, controller = scheduler.lr_lambdas
    assert controller(10) == 0 and controller(20) == 1 and controller(80) == 0
    assert backbone(0) == 1 and backbone(50) == pytest.approx(0.5)
    images = np.random.default_rng(0).integers(0, 256, (64, 1, 8, 8), dtype=np.uint8)
    training.before_step(80, images)
    assert training.calibration_offset is not None
    assert all(not p.requires_grad for m in model.front() for p in m.parameters())
    assert max(training.calibrated_costs.values()) <= 1
    model.train()
    assert not model.stem.training and model.blocks[0].training
    # What a resumed run restores.
    again = DynamicTraining(build_model(model_config), config, 100)
    again.load_state_dict(json.loads(json.dumps(training.state_dict())))
    assert again.calibration_offset == training.calibration_offset
    assert all(not p.requires_grad for m in again.model.front() for p in m.parameters())


def test_recalibrated_bn_uses_the_batch_and_restores():
    model = _tiny()
    images = np.random.default_rng(0).integers(0, 256, (50, 1, 8, 8), dtype=np.uint8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with recalibrated_bn(model, images, 2):
        mean = model.blocks[0].conv1.norm.running_mean.clone()
        codes = torch.from_numpy(images).long()
        stem = model.stem.run(model.input_activation(codes), 8)
        y = model.blocks[0].conv1(stem[0], stem[1], 2)      # eval: uses the running stats
        assert torch.allclose(y.mean(dim=(0, 2, 3)), model.blocks[0].conv1.norm.bias,
                              atol=1e-4)
        assert not torch.equal(mean, before["blocks.0.conv1.norm.running_mean"])
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fixed_width_report_and_oracle():
    model = _tiny(candidates=(2, 8))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 10, 40)
    report = fixed_width_report(model, images, labels, images)
    fixed = report["fixed_bits_accuracy"]
    oracle = report["oracle"]
    assert oracle["accuracy"] >= max(fixed.values())
    right_only = report["fixed_bits_right_only"]
    # The oracle is right where any width is: both, only 2 or only 8.
    assert oracle["accuracy"] == pytest.approx(
        fixed["2"] + right_only["8"])
    assert 2 <= oracle["average_bits"] <= 8


def test_choice_report():
    bits = torch.tensor([[2, 4], [2, 4], [2, 4], [4, 4], [8, 2]])
    report = choice_report(bits, np.array([0, 0, 1, 1, 1]))
    assert report["modal_bit_vector"] == [2, 4] and report["distinct_bit_vectors"] == 3
    assert report["off_modal_share"] == pytest.approx(0.4)
    assert report["top_bit_vectors"][0] == ["2,4", 3]
    assert report["image_bits_histogram"] == {"3": 3, "4": 1, "5": 1}
    assert report["class_average_bits"] == [3.0, pytest.approx(4.0)]


def test_diagnose_reports_every_layer_and_refuses_static_models(tmp_path, capsys):
    from train import diagnose
    from train.checkpoint import checkpoint_config, save_checkpoint
    # A learnable regression: targets that are a linear function of the inputs fit well.
    torch.manual_seed(0)
    inputs = torch.randn(200, 3, dtype=torch.float64)
    assert diagnose.heldout_r2(inputs, inputs @ torch.tensor([1.0, -2.0, 0.5],
                                                             dtype=torch.float64)) > 0.99
    assert diagnose.heldout_r2(inputs, torch.randn(200, dtype=torch.float64)) < 0.1
    codes = torch.from_numpy(load_dataset("digits", "train")[0][:64]).long()
    for mode in ("dqt", "static"):
        model = _tiny(mode)
        with torch.no_grad():       # running statistics and output scales of trained layers
            model.train()(codes)
        save_checkpoint(tmp_path / f"{mode}.pt", model, checkpoint_config(model, "digits"))
    report_path = tmp_path / "report.json"
    assert diagnose.main([str(tmp_path / "dqt.pt"), "--images", "40", "--batch", "20",
                          "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["images"] == 40 and list(report["layers"]) == _tiny().layer_names
    row = report["layers"]["block0.conv1"]
    assert len(row["mean_advantage"]) == 3 and abs(sum(row["mean_advantage"])) < 1e-6
    assert diagnose.main([str(tmp_path / "dqt.pt"), "--images", "40", "--batch", "20",
                          "--routing", "--json", str(report_path)]) == 0
    routing = json.loads(report_path.read_text())["routing"]
    low, high = routing["fixed_width_accuracy"][str(routing["low"])], \
        routing["fixed_width_accuracy"][str(routing["high"])]
    for row in routing["signals"].values():
        for fraction, point in row["routed"].items():
            # Routing a fraction up can gain at most the images only the high width gets
            # right, and lose at most those only the low width gets right.
            assert point["mean_bits"] == (routing["low"]
                                          + float(fraction) * (routing["high"] - routing["low"]))
            assert (low - routing["only_low_right"] - 1e-9 <= point["accuracy"]
                    <= low + routing["only_high_right"] + 1e-9)
    assert routing["only_high_right"] - routing["only_low_right"] == pytest.approx(high - low)
    assert diagnose.main([str(tmp_path / "dqt.pt"), "--images", "40", "--batch", "20",
                          "--per-width-bn", "--json", str(report_path)]) == 0
    bn = json.loads(report_path.read_text())["per_width_bn"]
    assert set(bn) == {"calibration_images", "trained", "recalibrated", "per_width"}
    assert all(0 <= bn[key] <= 1 for key in ("trained", "recalibrated", "per_width"))
    assert "one per width" in capsys.readouterr().out
    assert diagnose._auc(torch.tensor([0.1, 0.9, 0.2, 0.8]),
                         torch.tensor([False, True, False, True])) == 1.0
    assert diagnose._auc(torch.tensor([0.9, 0.1]), torch.tensor([False, True])) == 0.0
    assert diagnose.main([str(tmp_path / "static.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only dqt and dqnet models" in err


def test_cascade_reruns_the_least_confident_images_and_counts_both_passes(tmp_path, capsys):
    from dqt_hw.eval import margin_threshold
    from train import cascade
    from train.checkpoint import checkpoint_config, load_model, save_checkpoint
    from train.data import load_dataset
    from train.fit import main as fit_main
    from train.metrics import bitops, predict, w8a8_bitops
    # A trained model: an untrained one answers every image with equal logits.
    assert fit_main(["--threads", "1", "--no-progress", "--dataset", "digits", "--mode", "dqt",
                     "--epochs", "1", "--width", "4", "--out", str(tmp_path / "run")]) == 0
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    widths = sorted(model.config.candidates)
    images, labels = load_dataset("digits", "test")
    train_images, _ = load_dataset("digits", "train")
    report = cascade.cascade_report(model, images[:120], labels[:120], train_images[:300],
                                    train_images[:100], fractions=(0.0, 0.5, 1.0))
    shared = report["batch_norm"]["shared"]
    right = {b: predict(model, images[:120], bits=b)[0] == torch.from_numpy(labels[:120])
             for b in widths}
    assert {b: row["accuracy"] for b, row in shared["fixed"].items()} == {
        str(b): pytest.approx(float(r.double().mean())) for b, r in right.items()}
    layers = len(model.controlled)
    cost = {b: bitops(model, torch.full((1, layers), b)) / w8a8_bitops(model) for b in widths}
    rows = {(r["low"], r["high"], r["target_fraction"]): r for r in shared["cascades"]}
    assert len(rows) == 9 and set(report["batch_norm"]) == {"shared", "recalibrated"}
    for (low, high, fraction), row in rows.items():
        assert row["bitops_relative_w8a8"] == pytest.approx(cost[low]
                                                            + row["run_twice"] * cost[high])
        assert abs(row["run_twice"] - fraction) <= 0.15     # thresholds from training images
        # Each image's answer is the low or the high width's.
        both, either = right[low] & right[high], right[low] | right[high]
        assert (float(both.double().mean()) - 1e-9 <= row["accuracy"]
                <= float(either.double().mean()) + 1e-9)
    # The thresholds follow the integer package's rule (dqt_hw.eval.margin_threshold).
    low, high = widths[0], widths[-1]
    train_margins = cascade._margin(cascade._logits(model, train_images[:300], low)).numpy()
    assert [rows[(low, high, f)]["threshold"] for f in (0.0, 0.5, 1.0)] == [
        pytest.approx(margin_threshold(train_margins, f)) for f in (0.0, 0.5, 1.0)]
    # Nothing run twice: the low width's answers; everything: the high width's.
    none, every = rows[(low, high, 0.0)], rows[(low, high, 1.0)]
    assert abs(none["accuracy"] - float(right[low].double().mean())) <= none["run_twice"] + 1e-9
    assert every["run_twice"] == 1.0
    assert every["accuracy"] == pytest.approx(float(right[high].double().mean()))
    save_checkpoint(tmp_path / "static.pt", _tiny("static"),
                    checkpoint_config(_tiny("static"), "digits"))
    assert cascade.main([str(tmp_path / "static.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a cascade needs a model trained at several widths" in err


@pytest.mark.parametrize("hidden", ["fixed", "trained"])
def test_controller_hidden_layer_is_centred_when_the_controller_starts(hidden):
    """At the controller's first step every hidden ReLU is on for half of the training
    images; a fixed hidden layer is left out of the optimizer (it cannot die)."""
    config, model_config = resolve(TrainConfig(dataset="digits", mode="dqt", width=4,
                                               ctrl_hidden=hidden))
    torch.manual_seed(3)
    model = build_model(model_config)
    training = DynamicTraining(model, config, 100)
    optimizer, _ = training.optimizer()
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    fc1 = model.ctrl_fc1
    assert (id(fc1.weight) in optimized) == (hidden == "trained") == fc1.weight.requires_grad
    images = load_dataset("digits", "train")[0][:400]
    training.before_step(training.warm_end - 1, images)
    assert not fc1.bias.any()
    training.before_step(training.warm_end, images)
    from train.data import to_master_codes
    model.eval()
    with torch.no_grad():
        codes = to_master_codes(torch.from_numpy(images), model.master_bits)
        stem = model.stem.run(model.input_activation(codes), model.master_bits)
        pooled = model.controller_features(stem)
        active = (fc1(*pooled, model.master_bits) > 0).float().mean(dim=0)
    assert torch.all((active > 0.4) & (active < 0.6)), active
    with pytest.raises(ValueError, match="unknown ctrl-hidden 'frozen'"):
        resolve(TrainConfig(dataset="digits", mode="dqt", ctrl_hidden="frozen"))
