"""Training-step and inference throughput: C-RNN vs the matched CNN vs an
independent PyTorch C-RNN (`nn.LSTM`), measured in interleaved rounds.

Default: 32x32x3 input, conv stem to an 8x8x64 map (preset `crnn_small`),
64-unit bidirectional LSTM sweeps (rows then columns), batch 64, 2 threads.
`--size 64` gives a 16x16 map (sequences twice as long); `--cell gru` runs
every C-RNN (PyTorch's too) with GRU sweeps; `--batch 8` gives each thread an
eighth of the work per op (what batch 64 gives on 16 cores). The Keras rows use
`THREADS` intra-op threads and TensorFlow's default inter-op pool, as the
package does. Four rows switch one route off: `keras_crnn_xla_fused` (the fused
LSTM sweep's recurrences in XLA, not the native kernels), `keras_crnn_unfused`
(Keras's own LSTM or GRU in the training sweeps, both compiled as one XLA
function, in place of the fused sweeps' hand-written gradients), `keras_crnn_keras_bn`
(Keras's unfused BatchNormalization) and `keras_crnn_inter1` (one inter-op
thread).

Each implementation lives in its own process, built and warmed up once. The
parent then runs `--rounds` rounds; in each, every implementation in turn
(the order rotated from round to round, the others idle) times `--steps`
training steps and inference batches, and a matmul process measures the
float32 peak. A neighbour that slows the machine for a while thus hits every
implementation of a round alike. The table gives medians over rounds; the
ratios against PyTorch are per round, reported as median (min-max).

    python -m benchmarks.throughput [--size 64] [--cell gru] [--batch 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.common import THREADS, fix_threads, forward_macs, median, peak_rss_mb, print_table, write_json

BATCH, CLASSES = 64, 10  # BATCH: the default of --batch
IMPLS = ("keras_crnn", "keras_crnn_xla", "keras_crnn_xla_fused", "keras_crnn_unfused", "keras_crnn_keras_bn",
         "keras_crnn_inter1", "torch_crnn", "keras_cnn")
# Keras rows run as the package does: THREADS intra-op threads, TensorFlow's own inter-op pool.
# keras_crnn_xla_fused: the fused LSTM sweep's recurrences in XLA instead of the native kernels.
# keras_crnn_unfused: the C-RNN training through Keras's LSTM or GRU (compiled) instead of the fused sweep.
# keras_crnn_keras_bn: the C-RNN with Keras's own (unfused) BatchNormalization in the stem.
# keras_crnn_inter1: the C-RNN with one inter-op thread (ops run one at a time).


def keras_model(impl: str, size: int, cell: str, batch: int):
    if impl == "keras_crnn_xla_fused":
        os.environ["CRNN_KERAS_NATIVE"] = "0"
    fix_threads(inter_op=1 if impl == "keras_crnn_inter1" else None)
    import keras
    import numpy as np

    from crnn_keras.models import CRNNImageClassifier, backbones, cnn_baseline

    if impl == "keras_crnn_keras_bn":
        backbones.BatchNormalization = keras.layers.BatchNormalization
    if impl == "keras_crnn_unfused":
        from crnn_keras.layers import RowSweep

        RowSweep._fuses = lambda self, shape, training: False
    keras.utils.set_random_seed(0)
    crnn = CRNNImageClassifier.from_preset("crnn_small", num_classes=CLASSES, image_shape=(size, size, 3),
                                           sweep={"cell": cell})
    model = cnn_baseline(crnn) if impl == "keras_cnn" else crnn
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=impl == "keras_crnn_xla")
    x = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, CLASSES, (batch,))
    info = {"params": model.count_params(), "forward_macs": forward_macs(model)}
    return info, (lambda: model.train_on_batch(x, y)), (lambda: model.predict_on_batch(x))


def torch_model(size: int, cell: str, batch: int):
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    import torch
    from torch import nn

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    class Sweep(nn.Module):
        """Batched bidirectional LSTM (or GRU) over rows, then over columns."""

        def __init__(self, channels, units):
            super().__init__()
            rnn = nn.GRU if cell == "gru" else nn.LSTM
            self.rows = rnn(channels, units, batch_first=True, bidirectional=True)
            self.cols = rnn(2 * units, units, batch_first=True, bidirectional=True)

        def forward(self, x):  # (B, H, W, C)
            b, h, w, c = x.shape
            y, _ = self.rows(x.reshape(b * h, w, c))
            y = y.reshape(b, h, w, -1).transpose(1, 2)
            z, _ = self.cols(y.reshape(b * w, h, -1))
            return z.reshape(b, w, h, -1).transpose(1, 2)

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    class CRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2),
                                      *block(32, 64), *block(64, 64), nn.MaxPool2d(2))
            self.sweep = Sweep(64, 64)
            self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(128, CLASSES))

        def forward(self, x):
            f = self.stem(x / 255.0).permute(0, 2, 3, 1)
            return self.head(self.sweep(f).mean(dim=(1, 2)))

    model = CRNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch, 3, size, size)).float()
    y = torch.randint(0, CLASSES, (batch,))

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def infer():
        model.eval()
        with torch.no_grad():
            model(x)
        model.train()

    return {"params": sum(p.numel() for p in model.parameters())}, step, infer


def serve(impl: str, size: int, cell: str, batch: int) -> None:
    """Child process: builds one implementation, warms it up, then answers
    `train N` / `infer N` (median seconds per call) and `peak` lines on stdin."""
    if impl == "peak":
        fix_threads()
        import tensorflow as tf

        a, b = tf.random.normal((1024, 1024)), tf.random.normal((1024, 1024))
        info, calls = {}, {"peak": lambda: tf.linalg.matmul(a, b).numpy()}
    else:
        if impl == "torch_crnn":
            info, train, infer = torch_model(size, cell, batch)
        else:
            info, train, infer = keras_model(impl, size, cell, batch)
        calls = {"train": train, "infer": infer}
    for fn in calls.values():
        for _ in range(3):
            fn()
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        what, n = line.split()
        times = []
        for _ in range(int(n)):
            start = time.perf_counter()
            calls[what]()
            times.append(time.perf_counter() - start)
        print(json.dumps({"seconds": median(times), "peak_rss_mb": peak_rss_mb()}), flush=True)


class Child:
    def __init__(self, impl: str, size: int, cell: str = "lstm", batch: int = BATCH):
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.throughput", "--serve", impl,
                                      "--size", str(size), "--cell", cell, "--batch", str(batch)],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark child {self.proc.args[4]} died; run it alone to see why")
        return json.loads(line)

    def ask(self, what: str, n: int) -> dict:
        self.proc.stdin.write(f"{what} {n}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def spread(values: list[float]) -> str:
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="input side (map side = size / 4)")
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm", help="the C-RNNs' sweep cell")
    parser.add_argument("--batch", type=int, default=BATCH, help="images per training step and inference call")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed calls per implementation per round")
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be at least 1; got {args.batch}")
    if args.serve:
        return serve(args.serve, args.size, args.cell, args.batch)
    impls = args.impls.split(",")
    children = {impl: Child(impl, args.size, args.cell, args.batch) for impl in impls}  # Started one after another.
    peak = Child("peak", args.size)
    samples = {impl: {"train": [], "infer": []} for impl in impls}
    peaks, rss = [], {}
    for r in range(args.rounds):
        order = impls[r % len(impls):] + impls[:r % len(impls)]
        for impl in order:
            for what in ("train", "infer"):
                answer = children[impl].ask(what, args.steps)
                samples[impl][what].append(args.batch / answer["seconds"])
                rss[impl] = answer["peak_rss_mb"]
        peaks.append(2 * 1024**3 / peak.ask("peak", 10)["seconds"] / 1e9)
        print(f"round {r + 1}: " + ", ".join(f"{i} {samples[i]['train'][-1]:.0f}" for i in impls)
              + f" train img/s; peak {peaks[-1]:.0f} GFLOP/s", flush=True)
    for child in [*children.values(), peak]:
        child.close()
    macs = next((c.info["forward_macs"] for c in children.values() if "forward_macs" in c.info), None)
    rows = []
    for impl in impls:
        train = samples[impl]["train"]
        # Training ~ 3 forward passes (forward, input and weight gradients); 2 FLOPs per MAC.
        # PyTorch's model is the same architecture: the C-RNN's multiply-adds.
        m = children[impl].info.get("forward_macs", macs if impl == "torch_crnn" else None)
        shares = [6 * m * t / 1e9 / p for t, p in zip(train, peaks)] if m else []
        rows.append({"impl": impl, "params": children[impl].info["params"], "forward_macs": m,
                     "train_img_s": median(train), "train_gflop_s": 6 * m * median(train) / 1e9 if m else None,
                     "share_of_peak": median(shares) if shares else None, "infer_img_s": median(samples[impl]["infer"]),
                     "peak_rss_mb": rss[impl], "train_img_s_rounds": train,
                     "infer_img_s_rounds": samples[impl]["infer"]})
    print(f"\nbatch {args.batch}, {args.size}x{args.size}x3, {args.size // 4}x{args.size // 4}x64 map, "
          f"64-unit {args.cell.upper()} sweeps, {THREADS} threads; medians of {args.rounds} interleaved rounds of "
          f"{args.steps} calls")
    print_table(rows, ["impl", "params", "train_img_s", "train_gflop_s", "share_of_peak", "infer_img_s",
                       "peak_rss_mb"])
    ratios = {}
    if "torch_crnn" in samples:
        base = samples["torch_crnn"]
        for impl in impls:
            if impl != "torch_crnn":
                for what in ("train", "infer"):
                    per_round = [a / b for a, b in zip(samples[impl][what], base[what])]
                    ratios[f"{impl}_{what}_over_torch"] = {"median": median(per_round), "min": min(per_round),
                                                           "max": max(per_round), "rounds": per_round}
                    print(f"{impl} / torch_crnn, {what}: {spread(per_round)}")
    print(f"float32 matmul peak: {spread(peaks)} GFLOP/s")
    name = ("throughput" + ("" if args.size == 32 else f"_{args.size}") + ("" if args.cell == "lstm" else "_gru")
            + ("" if args.batch == BATCH else f"_batch{args.batch}"))
    print("written to", write_json(name, {"size": args.size, "cell": args.cell, "batch": args.batch,
                                          "rounds": args.rounds, "steps": args.steps, "threads": THREADS,
                                          "rows": rows, "ratios": ratios, "matmul_peak_gflop_s": peaks}))


if __name__ == "__main__":
    main()
