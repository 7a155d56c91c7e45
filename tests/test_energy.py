"""dqt_hw.energy: the 45 nm per-operation model, per-inference energy and transition op counts."""

import json

import numpy as np
import pytest

from dqt_hw import energy
from dqt_hw.golden import run_graph

from test_golden_graph import _layer


def tiny_net(dynamic, seed=5):
    """stem conv (8 bits) -> two controlled convs -> classifier (8 bits), 6x6 images."""
    rng = np.random.default_rng(seed)
    bits = [{"select": "bits", "index": i} for i in range(2)] if dynamic else [4, 4]
    ops = [_layer(rng, "conv2d", "stem", "image", "t0", (4, 1, 3, 3), 8, stride=1, padding=1)]
    if dynamic:
        ops += [
            dict(op="global_avg_pool", name="ctrl_pool", input="t0", output="c0",
                 multiplier=1 << 14, shift=19, lo=0, hi=255),
            _layer(rng, "linear", "ctrl_fc", "c0", "c1", (6, 4), 8, lo=-32767, hi=32767),
            dict(op="select_bits", name="ctrl", input="c1", output="bits",
                 candidates=[2, 4, 8], layers=2),
        ]
    ops += [
        _layer(rng, "conv2d", "conv1", "t0", "t1", (4, 4, 3, 3), bits[0], stride=1, padding=1),
        _layer(rng, "conv2d", "conv2", "t1", "t2", (4, 4, 3, 3), bits[1], stride=2, padding=1),
        dict(op="flatten", name="flat", input="t2", output="t3"),
        _layer(rng, "linear", "fc", "t3", "logits", (3, 36), 8, lo=-32767, hi=32767),
    ]
    return {"format": "dqt-hw-graph", "version": 1, "master_bits": 8,
            "inputs": {"image": {"shape": [1, 6, 6]}},
            "outputs": ["logits"] + (["bits"] if dynamic else []), "ops": ops}


def test_anchors_are_the_published_figures():
    assert energy.int_add_pj(8) == pytest.approx(0.03)
    assert energy.int_mul_pj(8, 8) == pytest.approx(0.2)
    assert energy.sram_pj(64, 8 * 1024) == pytest.approx(10.0)
    assert energy.sram_pj(64, 1 << 20) == pytest.approx(100.0)
    assert energy.dequant_requant_pj() == pytest.approx(2 * 0.9 + 2 * 3.7)


def test_scaling_assumptions_stay_near_the_32_bit_measurements():
    # The width-scaling rules are assumptions; this pins how far they are from Horowitz's
    # 32-bit figures (docs/energy.md quotes these errors).
    assert energy.int_add_pj(32) == pytest.approx(0.12)
    assert abs(energy.int_add_pj(32) / 0.1 - 1) <= 0.2
    assert abs(energy.int_mul_pj(32, 32) / 3.1 - 1) <= 0.05


def test_sram_energy_grows_with_size_and_width():
    sizes = [1024, 8 * 1024, 64 * 1024, 1 << 20, 1 << 24]
    values = [energy.sram_pj(64, size) for size in sizes]
    assert values == sorted(values)
    assert values[0] == values[1] and values[-1] == values[-2]      # clamped outside
    assert energy.sram_pj(8, 8 * 1024) == pytest.approx(10.0 / 8)


def test_nest_costs_nothing_at_master_width_and_far_less_than_a_float_switch():
    assert energy.nest_pj(8, 8) == 0.0
    for bits in (2, 4, 6):
        assert 0 < energy.nest_pj(8, bits) < energy.dequant_requant_pj() / 50


@pytest.mark.parametrize("call, message", [
    (lambda: energy.int_add_pj(0), "`bits` must be a positive integer, not 0"),
    (lambda: energy.int_mul_pj(8, 2.5), "`b_bits` must be a positive integer, not 2.5"),
    (lambda: energy.nest_pj(4, 8), r"`bits` must be at most `master_bits` \(4\), not 8"),
    (lambda: energy.sram_pj(8, 0), "`memory_bytes` must be a positive integer, not 0"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_layer_shapes_come_from_the_graph():
    layers = {layer.name: layer for layer in energy.network_layers(tiny_net(False))}
    assert layers["stem"].macs == 4 * 6 * 6 * 9 and layers["stem"].inputs == 36
    assert layers["conv2"].outputs == 4 * 3 * 3 and layers["conv2"].terms == 36
    assert layers["fc"].weights == 3 * 36 and layers["fc"].macs == 3 * 36
    assert layers["conv1"].bits == 4


def test_static_rows_fall_with_b_and_count_macs_and_bitops():
    graph = tiny_net(False)
    result = energy.inference_energy(graph, static_bits=(8, 4, 2))
    rows = {row["config"]: row for row in result["rows"]}
    assert [row["config"] for row in result["rows"]] == [
        "static b = 8", "static b = 4", "static b = 2"]
    macs = sum(layer["macs"] for layer in result["layers"])
    assert all(row["macs"] == macs for row in result["rows"])
    totals = [rows[f"static b = {b}"]["total_pj"] for b in (8, 4, 2)]
    assert totals[0] > totals[1] > totals[2]
    # Pinned to 8, nothing is nested; the first and last layers stay at 8 bits in every row.
    assert rows["static b = 8"]["nest_pj"] == 0.0
    layers = {layer["name"]: layer for layer in result["layers"]}
    middle = layers["conv1"]["macs"] + layers["conv2"]["macs"]
    ends = macs - middle
    assert rows["static b = 2"]["bitops"] == ends * 64 + middle * 4
    # SRAM traffic is at the master width whatever b is.
    assert rows["static b = 8"]["sram_pj"] == rows["static b = 2"]["sram_pj"]
    # The mean b of a static row is b over the controlled layers; the all-layer mean also
    # counts the first and last layers at 8 bits.
    assert result["controlled"] == ["conv1", "conv2"]
    for b in (8, 4, 2):
        assert rows[f"static b = {b}"]["mean_bits"] == b
        assert rows[f"static b = {b}"]["mean_bits_all_layers"] == pytest.approx(
            (ends * 8 + middle * b) / macs)


def test_dynamic_mix_interpolates_the_static_rows():
    graph = tiny_net(True)
    all_four = {"conv1": {4: 1.0}, "conv2": {4: 1.0}}
    result = energy.inference_energy(graph, static_bits=(4,), bit_mix=all_four)
    static, dynamic = result["rows"]
    assert dynamic["config"] == "dynamic (measured mix)"
    assert dynamic["total_pj"] == pytest.approx(static["total_pj"])
    half = {"conv1": {2: 0.5, 8: 0.5}, "conv2": {2: 0.5, 8: 0.5}}
    rows = {r["config"]: r for r in energy.inference_energy(
        graph, static_bits=(8, 2), bit_mix=half)["rows"]}
    expected = (rows["static b = 8"]["mac_pj"] + rows["static b = 2"]["mac_pj"]) / 2
    assert rows["dynamic (measured mix)"]["mac_pj"] == pytest.approx(expected)


def test_measured_bit_mix_matches_the_golden_choice():
    graph = tiny_net(True)
    images = np.random.default_rng(3).integers(0, 256, (20, 1, 6, 6))
    mix = energy.measure_bit_mix(graph, images)
    chosen = run_graph(graph, images)["bits"]
    for index, name in enumerate(("conv1", "conv2")):
        values, counts = np.unique(chosen[:, index], return_counts=True)
        assert mix[name] == {int(v): c / 20 for v, c in zip(values, counts)}


def test_transition_op_counts_are_one_shift_and_two_float_ops_per_element():
    graph = tiny_net(False)
    layers = {layer.name: layer for layer in energy.network_layers(graph)}
    counts = energy.transition_op_counts(graph, bits=4)
    switched = sum(layers[name].weights + layers[name].inputs for name in ("conv1", "conv2"))
    assert counts["elements"] == counts["shifts"] == switched
    assert counts["float_ops"] == 2 * switched
    assert counts["dequant_requant_pj"] == pytest.approx(switched * energy.dequant_requant_pj())
    assert energy.transition_op_counts(graph, bits=8)["elements"] == 0
    # Without a pinned b, the static network's own sub-n layers are the switched ones.
    assert energy.transition_op_counts(graph)["elements"] == switched


def test_cli_prints_the_tables_and_writes_json(tmp_path, capsys):
    from dqt_hw.package import write_package
    write_package(tiny_net(False), tmp_path / "pkg")
    assert energy.main(["--model", str(tmp_path / "pkg"), "--json",
                        str(tmp_path / "energy.json")]) == 0
    printed = capsys.readouterr().out
    assert "| static b = 4 |" in printed and "| 2 |" in printed
    saved = json.loads((tmp_path / "energy.json").read_text())
    assert saved["transition_op_counts"]["4"] == energy.transition_op_counts(
        tiny_net(False), bits=4, controlled=saved_controlled(tmp_path / "pkg"))


def saved_controlled(path):
    manifest = json.loads((path / "manifest.json").read_text())
    return manifest.get("controlled_layers") or None


def test_cli_bad_model_is_one_line(tmp_path, capsys):
    assert energy.main(["--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "is not a directory" in err
