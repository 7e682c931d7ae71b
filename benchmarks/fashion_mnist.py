"""Time-to-accuracy on real Fashion-MNIST, on this machine's CPU.

    python -m benchmarks.fashion_mnist [--epochs 30] [--models crnn,cnn_baseline]

Trains preset `crnn_fashion_mnist` and its parameter-matched CNN baseline on
the 60k training images (no validation hold-out), evaluates on the 10k test
images after every epoch, and reports the minutes until test accuracy first
reaches 0.93 (training time; the per-epoch test pass is not counted), the
final test accuracy and the parameter count. Needs the
Fashion-MNIST files (Debian's `dataset-fashion-mnist`, or CRNN_DATA_DIR).

Reference points (Fashion-MNIST README): 2 Conv <100K params 0.925;
2 Conv + pool + BN 0.934; DenseNet-BC 768K params 0.954.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import THREADS, fix_threads, print_table, write_json

fix_threads()
import keras  # noqa: E402

from crnn_keras.data import load_dataset  # noqa: E402
from crnn_keras.training import TrainConfig  # noqa: E402
from crnn_keras.training.task import build_model, compile_model  # noqa: E402

TARGET = 0.93


class TestAccuracyClock(keras.callbacks.Callback):
    def __init__(self, test):
        super().__init__()
        self.test, self.curve, self.reached = test, [], None
        self.start, self.paused = None, 0.0

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        # The clock counts training only: the per-epoch test pass is paused out.
        tick = time.time()
        accuracy = self.model.evaluate(self.test, verbose=0, return_dict=True)["accuracy"]
        minutes = (tick - self.start - self.paused) / 60
        self.paused += time.time() - tick
        self.curve.append((epoch + 1, round(minutes, 2), accuracy))
        print(f"epoch {epoch + 1}: test accuracy {accuracy:.4f} at {minutes:.1f} min", flush=True)
        if self.reached is None and accuracy >= TARGET:
            self.reached = minutes


def run(model_kind: str, args: argparse.Namespace) -> dict:
    epochs, batch, augment, translate = args.epochs, args.batch_size, not args.no_augment, args.translate
    config = TrainConfig(dataset="fashion_mnist?validation_size=0", model=model_kind,
                         preset=args.preset, sweep={"units": args.units} if args.units else {},
                         epochs=epochs, batch_size=batch,
                         learning_rate=args.learning_rate, warmup_epochs=args.warmup_epochs,
                         weight_decay=5e-4, augment=augment, translate=translate,
                         label_smoothing=0.1).validate()
    train, info = load_dataset(config.dataset, "train", batch_size=batch, augment=augment, translate=translate,
                               epochs=epochs)
    test, _ = load_dataset(config.dataset, "test", batch_size=256)
    steps = -(-info.splits["train"] // batch)
    keras.utils.set_random_seed(0)
    model = build_model(config, info)
    compile_model(model, config, steps, 10)
    clock = TestAccuracyClock(test)
    model.fit(train, epochs=epochs, steps_per_epoch=steps, callbacks=[clock], verbose=2,
              shuffle=False)
    return {"model": model_kind, "params": model.count_params(), "minutes_to_0.93": clock.reached,
            "final_test_accuracy": clock.curve[-1][2], "total_minutes": clock.curve[-1][1],
            "curve": clock.curve}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", default="crnn,cnn_baseline")
    parser.add_argument("--preset", default="crnn_fashion_mnist")
    parser.add_argument("--units", type=int, default=None, help="override the preset's sweep units")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    parser.add_argument("--translate", type=float, default=0.0)
    parser.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    args = parser.parse_args()
    rows = [run(kind, args) for kind in args.models.split(",")]
    print(f"Fashion-MNIST, preset {args.preset}, {args.epochs} epochs, batch {args.batch_size}, "
          f"lr {args.learning_rate}, augment {not args.no_augment}, {THREADS} threads")
    print_table(rows, ["model", "params", "minutes_to_0.93", "final_test_accuracy", "total_minutes"])
    print("written to", write_json("fashion_mnist", rows))


if __name__ == "__main__":
    main()
