"""Training-step and inference throughput and peak memory: C-RNN vs the matched
CNN baseline vs an independent PyTorch C-RNN, at one fixed configuration.

Default: 32x32x3 input, conv stem to an 8x8x64 map (preset `crnn_small`),
64-unit bidirectional LSTM sweeps (rows then columns), batch 64, 2 threads.

    python -m benchmarks.throughput            # prints a table, writes benchmarks/results/throughput.json
"""

from __future__ import annotations

import json
import sys

from benchmarks.common import (THREADS, fix_threads, forward_macs, matmul_peak_gflops, median, peak_rss_mb,
                               print_table, run_child, time_calls, write_json)

BATCH, SIZE, CLASSES = 64, 32, 10


def keras_case(kind: str, xla: bool = False) -> dict:
    fix_threads()
    import keras
    import numpy as np

    from crnn_keras.models import CRNNImageClassifier, cnn_baseline

    keras.utils.set_random_seed(0)
    crnn = CRNNImageClassifier.from_preset("crnn_small", num_classes=CLASSES, image_shape=(SIZE, SIZE, 3))
    model = crnn if kind == "crnn" else cnn_baseline(crnn)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=xla)
    x = np.random.default_rng(0).integers(0, 256, (BATCH, SIZE, SIZE, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, CLASSES, (BATCH,))
    train = median(time_calls(lambda: model.train_on_batch(x, y), warmup=3, repeats=15))
    infer = median(time_calls(lambda: model.predict_on_batch(x), warmup=3, repeats=15))
    return {"impl": f"keras_{kind}" + ("_xla" if xla else ""), "params": model.count_params(),
            "forward_macs": forward_macs(model), "train_img_s": BATCH / train, "infer_img_s": BATCH / infer,
            "peak_rss_mb": peak_rss_mb()}


def torch_case() -> dict:
    import os

    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    import torch
    from torch import nn

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    class Sweep(nn.Module):
        """Batched bidirectional LSTM over rows, then over columns."""

        def __init__(self, channels, units):
            super().__init__()
            self.rows = nn.LSTM(channels, units, batch_first=True, bidirectional=True)
            self.cols = nn.LSTM(2 * units, units, batch_first=True, bidirectional=True)

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
    x = torch.randint(0, 256, (BATCH, 3, SIZE, SIZE)).float()
    y = torch.randint(0, CLASSES, (BATCH,))

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model.eval()
            model(x)
            model.train()

    train = median(time_calls(step, warmup=3, repeats=15))
    inf = median(time_calls(infer, warmup=3, repeats=15))
    return {"impl": "torch_crnn", "params": sum(p.numel() for p in model.parameters()),
            "train_img_s": BATCH / train, "infer_img_s": BATCH / inf, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    if len(sys.argv) > 1:  # Child process: one case.
        case = sys.argv[1]
        if case == "peak":
            fix_threads()
            result = {"matmul_peak_gflop_s": matmul_peak_gflops()}
        elif case == "torch":
            result = torch_case()
        else:
            result = keras_case(case.replace("_xla", ""), case.endswith("_xla"))
        print(json.dumps(result))
        return
    rows = [run_child("throughput", case) for case in ("crnn", "cnn", "crnn_xla", "torch")]
    peak = run_child("throughput", "peak").get("matmul_peak_gflop_s")
    rows = [r for r in rows if "error" not in r] + [r for r in rows if "error" in r]
    by = {r.get("impl"): r for r in rows}
    crnn, cnn, torch = by.get("keras_crnn"), by.get("keras_cnn"), by.get("torch_crnn")
    macs = crnn["forward_macs"] if crnn else None
    for r in rows:  # The PyTorch model is the same architecture: the same multiply-adds.
        r.setdefault("forward_macs", macs)
        if r.get("forward_macs") and "train_img_s" in r:
            # Training ~ 3 forward passes (forward, input and weight gradients); 2 FLOPs per MAC.
            r["train_gflop_s"] = 6 * r["forward_macs"] * r["train_img_s"] / 1e9
    print(f"batch {BATCH}, {SIZE}x{SIZE}x3, 8x8x64 map, 64-unit LSTM sweeps, {THREADS} threads")
    print_table(rows, ["impl", "params", "forward_macs", "train_img_s", "train_gflop_s", "infer_img_s",
                       "peak_rss_mb", "error"])
    ratios = {}
    if crnn and cnn:
        ratios["crnn_step_time_over_cnn"] = cnn["train_img_s"] / crnn["train_img_s"]
    if crnn and torch:
        ratios["crnn_train_throughput_over_torch"] = crnn["train_img_s"] / torch["train_img_s"]
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    if peak:
        print(f"float32 matmul peak on {THREADS} threads: {peak:.0f} GFLOP/s")
        if torch and "train_gflop_s" in torch:
            need = 4 * torch["train_gflop_s"]
            print(f"4x PyTorch's training throughput needs {need:.0f} GFLOP/s, "
                  f"{100 * need / peak:.0f}% of that peak")
    print("written to", write_json("throughput", {"rows": rows, "ratios": ratios, "matmul_peak_gflop_s": peak}))


if __name__ == "__main__":
    main()
