"""The integer model package (dqt_hw.package): format, atomic writing, loading, validation.

These tests build valid golden descriptions with random integer weights themselves, so the
package contract is pinned independently of training. `random_graph` is reused by the eval and
test-vector tests.
"""

import json
import os
import shutil

import numpy as np
import pytest

from dqt_hw.golden import GRAPH_FORMAT, GRAPH_VERSION, quantize_multiplier, run_graph
from dqt_hw.package import (INPUT_QUANTIZER, MANIFEST_NAME, MANIFEST_SHA_NAME, PACKAGE_VERSION,
                            PackageError, format_hex,
                            load_package, main, pack_words, parse_hex, read_package, run_cli,
                            write_package)

MASTER = 8


def _layer(rng, kind, name, source, output, shape, bits, *, lo=0, hi=255, **extra):
    """A conv2d/linear op with random master-code weights and plausible integer constants."""
    weight = rng.integers(-127, 128, size=shape)
    terms = int(np.prod(shape[1:]))
    # Map a typical accumulator (sqrt(K) * 127 * 64) onto the middle of the output range.
    pairs = [quantize_multiplier(rng.uniform(0.5, 2.0) * 64 / (np.sqrt(terms) * 127 * 64))
             for _ in range(shape[0])]
    return dict(op=kind, name=name, input=source, output=output, weight=weight,
                bias=rng.integers(-2000, 2000, size=shape[0]),
                multiplier=np.array([m for m, _ in pairs]), shift=np.array([r for _, r in pairs]),
                bits=bits, lo=lo, hi=hi, **extra)


def random_graph(seed=0, *, dynamic=True, candidates=(2, 4, 8), size=8):
    """A small residual network in golden format: stem, two blocks, pooled classifier.

    Dynamic: a controller (global pool of the stem, linear, clip, linear, select_bits) picks the
    bit-widths of the two inner convolutions per image, then global pooling; static: they run at
    4 and 2 bits, then 2x2 average pooling and flatten.
    """
    rng = np.random.default_rng(seed)
    ops = [_layer(rng, "conv2d", "stem", "image", "t_stem", (4, 1, 3, 3), MASTER,
                  stride=1, padding=1)]
    if dynamic:
        m, r = quantize_multiplier(1 / (size * size))
        ops += [
            dict(op="global_avg_pool", name="ctrl_pool", input="t_stem", output="t_cpool",
                 multiplier=m, shift=r, lo=0, hi=255),
            _layer(rng, "linear", "ctrl_fc1", "t_cpool", "t_ch", (16, 4), MASTER),
            dict(op="clip", name="ctrl_relu", input="t_ch", output="t_chr", lo=0, hi=255),
            dict(_layer(rng, "linear", "ctrl_fc2", "t_chr", "t_cl", (2 * len(candidates), 16),
                        MASTER, lo=-128, hi=127), bias=np.zeros(2 * len(candidates), np.int64)),
            dict(op="select_bits", name="ctrl_select", input="t_cl", output="bits",
                 candidates=list(candidates), layers=2),
        ]
        bits_a, bits_b = ({"select": "bits", "index": 0}, {"select": "bits", "index": 1})
    else:
        bits_a, bits_b = 4, 2
    k1, s = quantize_multiplier(0.5)
    ops += [
        _layer(rng, "conv2d", "block1", "t_stem", "t_b1", (4, 4, 3, 3), bits_a,
               stride=1, padding=1),
        dict(op="add", name="join1", inputs=["t_stem", "t_b1"], output="t_j1", k1=k1, k2=k1,
             k3=0, shift=s, lo=0, hi=255),
        _layer(rng, "conv2d", "block2", "t_j1", "t_b2", (6, 4, 3, 3), bits_b,
               stride=2, padding=1),
    ]
    if dynamic:
        ops += [dict(op="global_avg_pool", name="pool", input="t_b2", output="t_pool",
                     **dict(zip(("multiplier", "shift"), quantize_multiplier(4 / (size * size)))),
                     lo=0, hi=255)]
        features = 6
    else:       # the other pooling ops, so that every op kind is packaged by some test
        ops += [dict(op="avg_pool2d", name="pool2", input="t_b2", output="t_p2", kernel=2,
                     stride=2, **dict(zip(("multiplier", "shift"), quantize_multiplier(0.25))),
                     lo=0, hi=255),
                dict(op="flatten", name="pool", input="t_p2", output="t_pool")]
        features = 6 * (size // 4) ** 2
    ops += [
        _layer(rng, "linear", "classifier", "t_pool", "logits", (10, features), MASTER,
               lo=-(1 << 31), hi=(1 << 31) - 1),     # unclipped 32-bit logits, as exported
    ]
    return {"format": GRAPH_FORMAT, "version": GRAPH_VERSION, "master_bits": MASTER,
            "inputs": {"image": {"shape": [1, size, size]}},
            "outputs": ["logits", "bits"] if dynamic else ["logits"], "ops": ops}


def random_images(count, seed=1, size=8):
    """Master codes with a per-image brightness, so the controller's pooled features vary."""
    rng = np.random.default_rng(seed)
    top = rng.integers(1, 257, size=(count, 1, 1, 1))
    return rng.integers(0, top, size=(count, 1, size, size))


def _same_graph(a, b):
    assert a["master_bits"] == b["master_bits"] and a["outputs"] == b["outputs"]
    assert [op["name"] for op in a["ops"]] == [op["name"] for op in b["ops"]]
    for x, y in zip(a["ops"], b["ops"]):
        assert set(x) == set(y), x["name"]
        for field in x:
            np.testing.assert_array_equal(np.asarray(x[field], dtype=object),
                                          np.asarray(y[field], dtype=object))


@pytest.mark.parametrize("dynamic", [False, True])
def test_round_trip_runs_identically(tmp_path, dynamic):
    graph = random_graph(3, dynamic=dynamic)
    write_package(graph, tmp_path / "pkg", metadata={"source": "test"})
    loaded, manifest = load_package(tmp_path / "pkg")
    _same_graph(graph, loaded)
    images = random_images(64)
    want, got = run_graph(graph, images), run_graph(loaded, images)
    for name in want:
        np.testing.assert_array_equal(want[name], got[name])
    assert manifest["version"] == PACKAGE_VERSION and manifest["dynamic"] == dynamic
    assert manifest["metadata"] == {"source": "test"}
    if dynamic:
        # The dynamic net really switches: both inner layers see more than one width.
        assert len(np.unique(got["bits"])) > 1


def test_manifest_holds_integers_shapes_and_roles(tmp_path):
    manifest = write_package(random_graph(1), tmp_path / "pkg")
    on_disk = json.loads((tmp_path / "pkg" / MANIFEST_NAME).read_text())
    assert on_disk == manifest
    ops = {op["name"]: op for op in on_disk["ops"]}
    assert [op["name"] for op in on_disk["ops"]][:2] == ["stem", "ctrl_pool"]
    assert {n for n, op in ops.items() if op["hw"]["role"] == "controller"} == {
        "ctrl_pool", "ctrl_fc1", "ctrl_relu", "ctrl_fc2", "ctrl_select"}
    assert ops["stem"]["hw"]["role"] == "backbone"
    stem = ops["stem"]
    assert stem["hw"]["input_shapes"] == [[1, 8, 8]] and stem["hw"]["output_shape"] == [4, 8, 8]
    assert stem["hw"]["terms"] == 9 and stem["hw"]["macs"] == 4 * 64 * 9
    assert ops["block2"]["hw"]["output_shape"] == [6, 4, 4]
    assert ops["block2"]["hw"]["accumulator_bits"] == {"2": 10, "4": 14, "8": 22}
    for name in ("stem", "block1", "classifier"):
        for field in ("bias", "multiplier", "shift"):
            assert all(type(v) is int for v in ops[name][field])
    assert ops["join1"]["k1"] == quantize_multiplier(0.5)[0]
    assert on_disk["candidates"] == [2, 4, 8]
    assert on_disk["inputs"] == {"image": {"shape": [1, 8, 8], "signed": False, "bits": 8,
                                           "quantizer": INPUT_QUANTIZER}}
    assert on_disk["logits"] is None and on_disk["dataset"] is None


def test_controller_tables(tmp_path):
    manifest = write_package(random_graph(1, candidates=(3, 5, 8)), tmp_path / "pkg")
    tables = manifest["controller"]["tables"]
    assert [t["layer"] for t in tables] == ["block1", "block2"]
    assert [t["index"] for t in tables] == [0, 1]
    for table in tables:
        assert [(e["bits"], e["activation_shift"], e["weight_shift"], e["acc_shift"])
                for e in table["entries"]] == [(3, 5, 5, 10), (5, 3, 3, 6), (8, 0, 0, 0)]
    memory = manifest["memories"]["controller_table"]
    words = parse_hex((tmp_path / "pkg" / memory["file"]).read_text())
    # Row (layer i, candidate k) at address i * 3 + k; fields bits | s_a << 8 | s_w << 16 | ...
    assert words[0] == 3 | 5 << 8 | 5 << 16 | 10 << 24
    assert words[3 + 2] == 8
    assert memory["depth"] == 6 and memory["word_bits"] == 32


def test_static_package_has_no_controller(tmp_path):
    manifest = write_package(random_graph(2, dynamic=False), tmp_path / "pkg")
    assert manifest["controller"] is None and manifest["candidates"] == [2, 4, 8]
    assert "controller_table" not in manifest["memories"]
    assert manifest["controlled_layers"] == ["stem", "block1", "block2", "classifier"]


def test_controlled_layers(tmp_path):
    manifest = write_package(random_graph(2, dynamic=False), tmp_path / "a",
                             controlled_layers=["block2", "block1"])
    assert manifest["controlled_layers"] == ["block1", "block2"]      # execution order
    with pytest.raises(PackageError, match="controlled layer 'ctrl_fc1' is not a backbone "
                                           "conv2d/linear op"):
        write_package(random_graph(2), tmp_path / "b", controlled_layers=["ctrl_fc1"])
    with pytest.raises(PackageError, match="dynamic-precision layer.s. block2 missing from "
                                           "the controlled layers"):
        write_package(random_graph(2), tmp_path / "b", controlled_layers=["block1"])


def test_pack_words_layout():
    rows = np.array([[1, -1, 2, -2, 127], [-127, 0, 0, 0, 0]])
    words = pack_words(rows, element_bits=8, word_bits=32, signed=True)
    # Lowest-indexed code in the least significant byte; each row starts on a new word.
    assert words == [0xFE02FF01, 0x7F, 0x00000081, 0x00]
    assert format_hex(words, 32) == "fe02ff01\n0000007f\n00000081\n00000000\n"
    assert pack_words(np.array([[5, 6, 7]]), element_bits=4, word_bits=10,
                      signed=False) == [0x65, 0x7]
    with pytest.raises(ValueError, match=r"`values` must fit 8-bit signed fields "
                                         r"\[-128, 127\], not \[0, 128\]"):
        pack_words(np.array([[0, 128]]), element_bits=8, word_bits=32, signed=True)
    with pytest.raises(ValueError, match="`word_bits` must be an integer >= `element_bits` "
                                         r"\(8\), not 4"):
        pack_words(rows, element_bits=8, word_bits=4, signed=True)


def test_weight_memory_matches_npy(tmp_path):
    graph = random_graph(4)
    manifest = write_package(graph, tmp_path / "pkg", word_bits=64)
    block = next(op for op in manifest["ops"] if op["name"] == "block2")
    memory = manifest["memories"][block["hw"]["memories"]["weight"]]
    assert (memory["elements_per_word"], memory["words_per_row"], memory["depth"]) == (8, 5, 30)
    words = parse_hex((tmp_path / "pkg" / memory["file"]).read_text())
    weight = np.load(tmp_path / "pkg" / block["weight"]["file"], allow_pickle=False)
    assert weight.dtype == np.int8 and weight.shape == (6, 4, 3, 3)
    # Unpack word by word and compare with the codes in (O, C, kh, kw) row-major order.
    for o in range(6):
        flat = weight[o].reshape(-1)
        for i, code in enumerate(flat):
            word = words[o * 5 + i // 8]
            field = (word >> (8 * (i % 8))) & 0xFF
            assert field - 256 * (field >> 7) == code
    bias = manifest["memories"][block["hw"]["memories"]["bias"]]
    assert bias["element_bits"] == block["hw"]["master_accumulator_bits"] == 22


def test_atomic_replace_and_refusals(tmp_path):
    out = tmp_path / "pkg"
    write_package(random_graph(1), out)
    write_package(random_graph(2, dynamic=False), out)          # replaces an old package
    assert read_package(out)["outputs"] == ["logits"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no temp dirs left behind
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(PackageError, match="exists and is not a dqt-hw package"):
        write_package(random_graph(1), other)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    bad = random_graph(1)
    bad["ops"][0]["weight"] = bad["ops"][0]["weight"][:, :, :2]    # 3x2 kernel, still valid
    bad["ops"][0]["bias"] = bad["ops"][0]["bias"][:3]               # but 3 biases for 4 channels
    with pytest.raises(PackageError, match=r"op 'stem': bias must have shape \(4,\)"):
        write_package(bad, out)
    assert read_package(out)["outputs"] == ["logits"]              # the old package survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "pkg"]


def test_channel_mismatch_names_the_op(tmp_path):
    graph = random_graph(1)
    block = next(op for op in graph["ops"] if op["name"] == "block2")
    block["weight"] = block["weight"][:, :3]
    with pytest.raises(PackageError, match="op 'block2': shapes do not fit together: input "
                                           "has 4 channels but the weight expects 3"):
        write_package(graph, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_dead_op_is_refused(tmp_path):
    graph = random_graph(1, dynamic=False)
    graph["ops"].insert(1, dict(op="clip", name="unused", input="t_stem", output="t_x",
                                lo=0, hi=3))
    with pytest.raises(PackageError, match="op 'unused' feeds no output"):
        write_package(graph, tmp_path / "pkg")


@pytest.fixture
def package(tmp_path):
    write_package(random_graph(5), tmp_path / "pkg")
    return tmp_path / "pkg"


def _edit_manifest(package, edit):
    path = package / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _op(manifest, name):
    return next(op for op in manifest["ops"] if op["name"] == name)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(version=99), r"unsupported package format version 99 \(this dqt_hw "
                                     r"reads version 1\); re-export it with `python -m "
                                     r"dqt_hw.export CHECKPOINT --out "),
    (lambda m: m.update(format="other"), "manifest.json is not a 'dqt-hw-package' manifest"),
    (lambda m: m.pop("ops"), "manifest.json lacks field 'ops'"),
    (lambda m: _op(m, "block1")["weight"].update(shape=[4, 4, 9]),
     r"op 'block1' weight: weights/block1.weight.npy has shape \[4, 4, 3, 3\] but the "
     r"manifest says \[4, 4, 9\]"),
    (lambda m: _op(m, "block1").update(bias=[1, 2, 3]),
     r"op 'block1': bias must have shape \(4,\) to match the weight"),
    (lambda m: _op(m, "block1")["hw"].update(output_shape=[4, 4, 4]),
     r"op 'block1': manifest says output_shape = \[4, 4, 4\] but the weights give \[4, 8, 8\]"),
    (lambda m: _op(m, "block2").update(stride=1),
     r"op 'block2': manifest says output_shape = \[6, 4, 4\] but the weights give \[6, 8, 8\]"),
    (lambda m: _op(m, "block1")["weight"].update(file="../elsewhere.npy"),
     "must stay inside the package"),
    (lambda m: m["controller"]["tables"][0]["entries"][0].update(acc_shift=5),
     "controller section does not match"),
    (lambda m: m["memories"]["block1.weight"].update(word_bits=16),
     r"memory 'block1.weight': layout"),
    (lambda m: m.update(inputs=[]), r"malformed manifest.json \(AttributeError: "),
    (lambda m: m.update(controlled_layers=["stem", "block1"]),
     "dynamic-precision layer.s. block2 missing from the controlled layers"),
])
def test_bad_manifest(package, edit, message):
    _edit_manifest(package, edit)
    with pytest.raises(PackageError, match=message):
        load_package(package)


def test_missing_and_corrupt_files(package):
    (package / "mem" / "block2.bias.hex").unlink()
    with pytest.raises(PackageError, match=r"memory 'block2.bias': missing file "
                                           r"mem/block2.bias.hex; re-export the package"):
        load_package(package)
    weight = package / "weights" / "stem.weight.npy"
    data = bytearray(weight.read_bytes())
    data[-1] ^= 1
    weight.write_bytes(bytes(data))
    with pytest.raises(PackageError, match=r"op 'stem' weight: weights/stem.weight.npy does "
                                           r"not match its sha256"):
        load_package(package)
    (package / MANIFEST_NAME).write_text('{"format": "dqt-hw-package", ')
    with pytest.raises(PackageError, match=r"manifest.json: not valid JSON"):
        load_package(package)
    (package / MANIFEST_NAME).unlink()
    with pytest.raises(PackageError, match="missing manifest.json; is this a package"):
        load_package(package)
    shutil.rmtree(package)
    with pytest.raises(PackageError, match="is not a directory"):
        load_package(package)


def test_tampered_hex_with_matching_checksum_is_caught(package):
    # A memory file rewritten consistently (new sha256 in the manifest) but holding other
    # codes than the .npy weights must still be refused: the two views must agree.
    import hashlib
    path = package / "mem" / "block1.weight.hex"
    words = parse_hex(path.read_text())
    words[0] ^= 1
    data = format_hex(words, 32).encode()
    path.write_bytes(data)
    _edit_manifest(package, lambda m: m["memories"]["block1.weight"].update(
        sha256=hashlib.sha256(data).hexdigest()))
    with pytest.raises(PackageError, match="memory 'block1.weight': mem/block1.weight.hex "
                                           "does not hold the packed weights"):
        load_package(package)


def test_weights_written_as_npy_without_pickle(package):
    manifest = json.loads((package / MANIFEST_NAME).read_text())
    for op in manifest["ops"]:
        if "weight" in op:
            array = np.load(package / op["weight"]["file"], allow_pickle=False)
            assert array.dtype.str == op["weight"]["dtype"] == "|i1"
    assert not any(name.startswith(".") for name in os.listdir(package.parent))


def test_validate_command(package, capsys):
    assert run_cli(main, [str(package)]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"{package}: valid\n")
    assert "block2" in out and "bits from bits[1]" in out and "memory-init files" in out
    (package / "mem" / "stem.shift.hex").unlink()
    assert run_cli(main, [str(package)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {package}: memory 'stem.shift': missing file mem/stem.shift.hex; "
                   f"re-export the package\n")


def test_pickled_weight_file_is_refused(package):
    # Even with a matching checksum, an object (pickle) array is never unpickled.
    import hashlib
    import io
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    path = package / "weights" / "block1.weight.npy"
    path.write_bytes(buffer.getvalue())
    _edit_manifest(package, lambda m: _op(m, "block1")["weight"].update(
        sha256=hashlib.sha256(buffer.getvalue()).hexdigest()))
    with pytest.raises(PackageError, match=r"op 'block1' weight: weights/block1.weight.npy is "
                                           r"not a NumPy array \(Object arrays cannot be loaded"):
        load_package(package)


def test_a_consistent_manifest_edit_is_caught_by_its_checksum(package):
    # The residual join's clip is in no memory file: only manifest.sha256 notices the edit.
    _edit_manifest(package, lambda m: _op(m, "join1").update(hi=200))
    with pytest.raises(PackageError, match="manifest.json does not match manifest.sha256 "
                                           r"\(edited or damaged\); re-export the package"):
        load_package(package)
    # It guards against accidents, not deliberate edits: without it (or with a recomputed
    # one) the edited package is read, as a package written before the checksum existed is.
    (package / MANIFEST_SHA_NAME).unlink()
    assert _op(load_package(package)[1], "join1")["hi"] == 200


def test_manifest_sha256_is_a_sha256sum_line(package):
    import hashlib
    digest = hashlib.sha256((package / MANIFEST_NAME).read_bytes()).hexdigest()
    assert (package / MANIFEST_SHA_NAME).read_text() == f"{digest}  manifest.json\n"


def test_hex_files_end_every_line_with_a_newline(package):
    for path in (package / "mem").iterdir():
        text = path.read_bytes()
        assert text.endswith(b"\n") and b"\r" not in text and not text.endswith(b"\n\n")


def test_the_input_quantizer_in_the_manifest_is_the_one_in_use():
    from train.data import to_master_codes
    pixels = np.arange(256, dtype=np.uint8)
    for n in (2, 3, 4, 7, 8, 12, 16):
        rule = eval(INPUT_QUANTIZER["code"].replace("^", "**"),
                    {"p": pixels.astype(np.int64), "n": n})
        assert np.array_equal(rule, to_master_codes(pixels, n)), n


@pytest.mark.parametrize("logits, message", [
    ({"tensor": "nope", "frac_bits": 16}, "logits.tensor 'nope' is not an output of the graph"),
    ({"tensor": "logits", "frac_bits": -1},
     "logits.frac_bits must be a non-negative integer, not -1"),
    ({"tensor": "logits", "frac_bits": 16, "classes": ["a", "b"]},
     r"pkg: logits.classes must name the 10 classes as strings, not \['a', 'b'\]"),
])
def test_logit_unit_and_classes_are_checked(tmp_path, logits, message):
    with pytest.raises(PackageError, match=message):
        write_package(random_graph(1), tmp_path / "pkg", logits=logits)
    assert not (tmp_path / "pkg").exists()


def test_logit_unit_classes_and_dataset_round_trip(tmp_path):
    logits = {"tensor": "logits", "frac_bits": 16, "classes": [f"c{i}" for i in range(10)]}
    dataset = {"name": "toy", "images": 3, "order": "as listed"}
    write_package(random_graph(1), tmp_path / "pkg", logits=logits, dataset=dataset)
    manifest = load_package(tmp_path / "pkg")[1]
    assert manifest["logits"] == logits and manifest["dataset"] == dataset
