"""Recipe search on builtin:lra_pathfinder: fresh images every chunk, a wall-clock budget.

    python -m benchmarks.lra_pathfinder_search MODEL MINUTES DIFFICULTY

MODEL is one of MODELS, `matched_cnn` or `deep_cnn` (matched to the parameters of MODELS[MATCH],
crnn_pathfinder by default; a `+tag` suffix names the run only);
env LR, BATCH, CHUNK (images per fit call), EST (images the cosine schedule spans), STOP (images to stop
after, if before EST or MINUTES; to repeat a run that MINUTES stopped), POOLING
(the head's, `avg` or `max`; the CNNs copy it), CURRICULUM=L0:ACC (train from contour length L0, one
paddle longer each time the accuracy on 2,000 validation images of the current length reaches
ACC, or after STAGE_MAX images at that length, up to the difficulty's; for every model alike). Logs one
JSON line per chunk (images seen, minutes, loss, validation accuracy on 2,000 images) to
runs/lra_search/MODEL_DIFFICULTY.jsonl, then the accuracy on 10,000 fresh test images and,
where the file exists, on images of the original generator (LRA_ORIGINAL=path.npz with
`images` and `labels`
scored once at the end, never used for choices).
"""
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from crnn_keras.atomic import atomic_path  # noqa: E402
from crnn_keras.data import builtin, lra_pathfinder  # noqa: E402
from crnn_keras.models import CRNNImageClassifier, cnn_baseline  # noqa: E402

name, minutes, difficulty = sys.argv[1], float(sys.argv[2]), sys.argv[3]
lr = float(os.environ.get("LR", "3e-3"))
batch = int(os.environ.get("BATCH", "64"))
chunk = int(os.environ.get("CHUNK", "10000"))
pooling = os.environ.get("POOLING", "avg")
# CURRICULUM=L0:ACC: start at contour length L0, one longer each time validation accuracy at the
# current length reaches ACC, up to the difficulty's (validation images only, never test ones).
curriculum = os.environ.get("CURRICULUM", "")
def _sweep(units=32, cell="lstm", order="parallel", blocks=2, mlp_ratio=2, **extra):
    return {"units": units, "cell": cell, "order": order, "blocks": blocks, "residual": True,
            "mlp_ratio": mlp_ratio, **extra}


FULL_RES_CNN = {"type": "conv", "filters": [24], "convs_per_stage": [2], "final_pool": False}
MODELS = {  # crnn_pathfinder with other sweeps (architecture overrides of the preset).
    "crnn_pathfinder": {},
    "full_res": {"cnn": FULL_RES_CNN, "sweep": _sweep(units=24)},
    "gru": {"sweep": _sweep(cell="gru")},
    "deep4": {"sweep": _sweep(units=24, blocks=4, mlp_ratio=1)},
    "iter2": {"sweep": _sweep(passes=2)},
    "rtc": {"sweep": _sweep(order="rows_then_columns")},
    "mingru": {"sweep": _sweep(cell="mingru")},
    "mingru4": {"sweep": _sweep(cell="mingru", blocks=4)},
    "selective": {"sweep": _sweep(cell="selective")},
}
base = name.split("+")[0]


def build():
    kind = base
    if kind in ("matched_cnn", "deep_cnn"):
        crnn = CRNNImageClassifier.from_preset("crnn_pathfinder", num_classes=2, pooling=pooling,
                                               **MODELS[os.environ.get("MATCH", "crnn_pathfinder")])
        return cnn_baseline(crnn, depth=4 if kind == "deep_cnn" else 1)
    return CRNNImageClassifier.from_preset("crnn_pathfinder", num_classes=2, pooling=pooling, **MODELS[kind])


model = build()
t0 = time.time()
xv, yv = lra_pathfinder.generate(2000, seed=[777, 1], difficulty=difficulty)
est_images = int(os.environ.get("EST", "150000"))
steps = est_images // batch
sched = keras.optimizers.schedules.CosineDecay(0.0, steps, alpha=0.0, warmup_target=lr,
                                               warmup_steps=int(0.03 * steps))
model.compile(optimizer=keras.optimizers.AdamW(sched, weight_decay=1e-4, clipnorm=1.0))
out_dir = os.path.join("runs", "lra_search")
os.makedirs(out_dir, exist_ok=True)
log = open(os.path.join(out_dir, f"{name}_{difficulty}.jsonl"), "w")
print(name, model.count_params(), flush=True)
ENV = ("LR", "BATCH", "CHUNK", "EST", "STOP", "POOLING", "CURRICULUM", "STAGE_MAX", "MATCH")
config = {"model": name, "minutes": minutes, "difficulty": difficulty, "learning_rate": lr, "batch_size": batch,
          "chunk": chunk, "schedule_images": est_images, "pooling": pooling, "curriculum": curriculum,
          "weight_decay": 1e-4, "clipnorm": 1.0, "warmup": 0.03, "optimizer": "adamw", "schedule": "cosine",
          "env": {k: os.environ[k] for k in ENV if k in os.environ}}
log.write(json.dumps({"config": config}) + "\n")
final_length = lra_pathfinder.DIFFICULTIES[difficulty]
length, advance_at = final_length, 1.0
if curriculum:
    length, advance_at = int(curriculum.split(":")[0]), float(curriculum.split(":")[1])
stage_val = {}
stage_max, at_stage = int(os.environ.get("STAGE_MAX", str(10**12))), 0
seen, k = 0, 0
pool = ThreadPoolExecutor(1)  # The next chunk is drawn while this one trains.


def draw(k, length):
    return length, pool.submit(lra_pathfinder.generate, chunk, seed=[777, 100 + k], contour_length=length)


pending = draw(k, length)
stop_images = int(os.environ.get("STOP", est_images))
while (time.time() - t0) / 60 < minutes and seen < stop_images:
    drawn_length, future = pending
    x, y = future.result() if drawn_length == length else draw(k, length)[1].result()
    k += 1
    pending = draw(k, length)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(chunk).batch(batch).prefetch(2)
    h = model.fit(ds, epochs=1, verbose=0)
    seen += chunk
    ev = model.evaluate(xv, yv, batch_size=256, verbose=0, return_dict=True)
    rec = {"seen": seen, "minutes": round((time.time() - t0) / 60, 2), "loss": round(h.history["loss"][-1], 4),
           "val": round(ev["accuracy"], 4), "length": length}
    if length < final_length:
        if length not in stage_val:
            stage_val[length] = lra_pathfinder.generate(2000, seed=[777, 2, length], contour_length=length)
        es = model.evaluate(*stage_val[length], batch_size=256, verbose=0, return_dict=True)
        rec["stage_val"] = round(es["accuracy"], 4)
        at_stage += chunk
        if es["accuracy"] >= advance_at or at_stage >= stage_max:
            length, at_stage = length + 1, 0
    print(rec, flush=True)
    log.write(json.dumps(rec) + "\n")
    log.flush()
pool.shutdown(cancel_futures=True)
with atomic_path(os.path.join(out_dir, f"{name}_{difficulty}.keras")) as tmp:
    model.save(tmp)
# The test split of `builtin:lra_pathfinder?difficulty=...` (the presets' metadata names it).
xt, yt = builtin.generate("lra_pathfinder", "test", 10000, difficulty=difficulty)
et = model.evaluate(xt, yt, batch_size=256, verbose=0, return_dict=True)
rec = {"test_10000": round(et["accuracy"], 4), "test_set": f"builtin:lra_pathfinder?difficulty={difficulty} [test]"}
if os.path.exists(os.environ.get("LRA_ORIGINAL", "")):
    orig = np.load(os.environ["LRA_ORIGINAL"])
    ev = model.evaluate(orig["images"][..., None], orig["labels"], batch_size=256, verbose=0,
                        return_dict=True)
    rec["original_generator"] = round(ev["accuracy"], 4)
    rec["original_generator_examples"] = len(orig["labels"])
print(rec, flush=True)
log.write(json.dumps(rec) + "\n")
log.flush()
