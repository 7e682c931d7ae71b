"""The layers, both model classes and `from_preset` on the JAX and PyTorch
backends, each in its own process, against TensorFlow in this one."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from crnn_keras.models import CRNNImageClassifier, list_presets

TRAINED = sorted(name for name, p in list_presets().items() if p["weights"])

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import keras
    assert keras.backend.backend() == os.environ["KERAS_BACKEND"], keras.backend.backend()
    from crnn_keras.layers import ColumnSweep, RowSweep, SpatialSweep2D
    from crnn_keras.models import CRNNBackbone, CRNNImageClassifier

    preset, images, out, preset_dir = sys.argv[1:5]
    x = np.load(images)
    model = CRNNImageClassifier.from_preset(preset)
    np.save(out, np.asarray(model.predict(x, verbose=0)))

    # One training step on integer labels with compile() defaults.
    y = np.arange(len(x)) % model.num_classes
    before = [np.array(w) for w in model.get_weights()]
    model.compile()
    loss = model.fit(x, y, epochs=1, batch_size=len(x), verbose=0).history["loss"][0]
    changed = sum(not np.allclose(a, np.array(b)) for a, b in zip(before, model.get_weights()))

    # save_to_preset / from_preset round trip on this backend.
    model.save_to_preset(preset_dir)
    again = CRNNImageClassifier.from_preset(preset_dir)
    round_trip = float(np.abs(np.asarray(again.predict(x, verbose=0)) - np.asarray(model.predict(x, verbose=0))).max())

    # Layers and a backbone with unknown height and width, GRU cells.
    backbone = CRNNBackbone(image_shape=(None, None, 1), cnn={"type": "conv", "filters": [4, 8],
                            "convs_per_stage": 1}, sweep={"units": 4, "cell": "gru", "order": "parallel"})
    shapes = [list(backbone.predict(np.zeros((2, 12, 20, 1), "float32"), verbose=0).shape)]
    m = np.random.default_rng(0).normal(size=(2, 3, 5, 6)).astype("float32")
    shapes += [list(keras.ops.shape(layer(m))) for layer in (RowSweep(4), ColumnSweep(4, merge_mode="sum"),
                                                               SpatialSweep2D(4, cell="simple_rnn"))]
    print("RESULT " + json.dumps({"loss": float(loss), "changed": changed, "total": len(before),
                                  "round_trip": round_trip, "shapes": shapes}))
""")


@pytest.mark.slow
@pytest.mark.skipif(not TRAINED, reason="no trained preset is shipped")
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_loads_the_preset_predicts_as_tensorflow_and_trains(backend, tmp_path):
    pytest.importorskip(backend)
    preset = TRAINED[0]
    model = CRNNImageClassifier.from_preset(preset)
    shape = (6,) + tuple(model.backbone.image_shape)
    x = np.random.default_rng(0).integers(0, 256, shape).astype("float32")
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "",
           "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, preset, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
         str(tmp_path / "preset")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x, verbose=0), atol=1e-4)
    assert np.isfinite(result["loss"]) and result["changed"] > result["total"] // 2
    assert result["round_trip"] < 1e-5
    assert result["shapes"] == [[2, 3, 5, 16], [2, 3, 5, 8], [2, 3, 5, 4], [2, 3, 5, 8]]
