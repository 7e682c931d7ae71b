"""Bad requests to an export fail with InvalidArgument naming the image and the
problem; valid images of every supported kind are answered; the next request
after each bad one is answered in the same process."""

import io
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from crnn_keras.export import export_saved_model
from crnn_keras.models import CRNNImageClassifier

SIZE = 16


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, image_shape=(SIZE, SIZE, 3),
                                            sweep={"units": 4})
    path = export_saved_model(model, str(tmp_path_factory.mktemp("sm") / "m"), max_pixels=1_000_000)
    loaded = tf.saved_model.load(path)
    return path, loaded.signatures["serving_default"], loaded.signatures["serve_tensor"], loaded.signatures


@pytest.fixture(scope="module")
def signatures(loaded):
    return loaded[:3]


def _image(seed=0, size=SIZE):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3)).astype(np.uint8)


def _encode(array, fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width, height, end=False):
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + (_png_chunk(b"IEND", b"") if end else b"")


def _top_down_bmp(array):
    data = bytearray(_encode(array, "BMP"))
    height = struct.unpack("<i", data[22:26])[0]
    offset = struct.unpack("<I", data[10:14])[0]
    row = (24 * array.shape[1] + 31) // 32 * 4
    rows = [data[offset + i * row: offset + (i + 1) * row] for i in range(height)]
    data[22:26] = struct.pack("<i", -height)
    data[offset:] = b"".join(reversed(rows))  # Top row first.
    return bytes(data)


def _exif_rotated_jpeg(array):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
    return _encode(array, "JPEG", exif=exif.tobytes(), quality=95)


def _cmyk_jpeg(array):
    buffer = io.BytesIO()
    Image.fromarray(array).convert("CMYK").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _animated_gif(arrays):
    frames = [Image.fromarray(a) for a in arrays]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _ok(serve_bytes, serve_tensor):
    """The next good request is answered."""
    out = serve_bytes(image_bytes=tf.constant([_encode(_image(5), "PNG")]))
    assert out["probabilities"].shape == (1, 3)
    out = serve_tensor(images=tf.constant(_image(5)[None].astype(np.float32)))
    assert out["probabilities"].shape == (1, 3)


@pytest.mark.parametrize("name,make", [
    ("png", lambda a: _encode(a, "PNG")),
    ("gif", lambda a: _encode(a, "GIF")),
    ("bmp bottom-up 24-bit", lambda a: _encode(a, "BMP")),
    ("bmp top-down", _top_down_bmp),
    ("bmp 32-bit", lambda a: _encode(np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]), "BMP")),
    ("jpeg baseline", lambda a: _encode(a, "JPEG", quality=95)),
    ("jpeg progressive", lambda a: _encode(a, "JPEG", quality=95, progressive=True)),
    ("jpeg cmyk", _cmyk_jpeg),
    ("jpeg exif-rotated", _exif_rotated_jpeg),
    ("jpeg with 5 KB after the end marker", lambda a: _encode(a, "JPEG", quality=95) + bytes(range(256)) * 20),
    ("png with a trailing byte", lambda a: _encode(a, "PNG") + b"\n"),
    ("gif animated, 3 frames", lambda a: _animated_gif([a, a[::-1], a[:, ::-1]])),
])
def test_valid_images_of_every_kind_are_answered(signatures, name, make):
    _, serve_bytes, serve_tensor = signatures
    array = _image(1)
    out = serve_bytes(image_bytes=tf.constant([make(array)]))
    probs = out["probabilities"].numpy()
    assert probs.shape == (1, 3) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    if name in ("png", "bmp bottom-up 24-bit", "bmp top-down", "bmp 32-bit"):  # Lossless: same pixels.
        expected = serve_tensor(images=tf.constant(array[None].astype(np.float32)))["probabilities"]
        np.testing.assert_allclose(probs, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("name,payload,message", [
    ("garbage after the PNG signature", b"\x89PNG\r\n\x1a\n" + b"x" * 100,
     "image 0 of 1: not a valid PNG: no IHDR header"),
    ("truncated PNG", "truncated_png", "image 0 of 1: truncated PNG"),
    ("6000x6000 PNG header, no pixel data", _png_header_only(6000, 6000), "image 0 of 1: truncated PNG"),
    ("header over max_pixels", _png_header_only(5000, 5000, end=True),
     "image 0 of 1: 5000 x 5000 = 25000000 pixels, over the limit max_pixels=1000000"),
    ("truncated JPEG", "truncated_jpeg", "image 0 of 1: truncated or corrupt JPEG"),
    ("truncated GIF", "truncated_gif", "image 0 of 1: truncated or corrupt GIF"),
    ("8-bit palette BMP", "palette_bmp", "image 0 of 1: BMP with 8-bit pixels"),
    ("GIF frame larger than its screen", "big_frame_gif", "image 0 of 1: 2000 x 2000 = 4000000 pixels, over"),
    ("GIF with many frames", "many_frames_gif", "image 0 of 1: 30 frames of 200 x 200 = 1200000 pixels, over"),
    ("truncated BMP", "truncated_bmp", "image 0 of 1: truncated BMP: the header says 16 x 16 pixels"),
    ("text", b"definitely not an image, just some text bytes", "image 0 of 1: not a JPEG, PNG, BMP or GIF"),
    ("too short", b"tiny", "image 0 of 1: 4 bytes, too short"),
])
def test_bad_images_are_refused_by_name(signatures, name, payload, message):
    _, serve_bytes, serve_tensor = signatures
    if payload == "palette_bmp":
        buffer = io.BytesIO()
        Image.fromarray(_image(2)).convert("P").save(buffer, format="BMP")
        payload = buffer.getvalue()
    elif payload == "big_frame_gif":  # The screen says 16 x 16; the frame is 2000 x 2000.
        data = bytearray(_encode(np.zeros((2000, 2000, 3), np.uint8), "GIF"))
        data[6:10] = struct.pack("<HH", 16, 16)
        payload = bytes(data)
    elif payload == "many_frames_gif":
        frames = [Image.fromarray(_image(i, 200)) for i in range(30)]
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
        payload = buffer.getvalue()
    elif isinstance(payload, str):
        fmt = {"truncated_png": "PNG", "truncated_jpeg": "JPEG", "truncated_gif": "GIF", "truncated_bmp": "BMP"}
        full = _encode(_image(2), fmt[payload])
        payload = full[: len(full) // 2]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve_bytes(image_bytes=tf.constant([payload]))
    _ok(serve_bytes, serve_tensor)


def test_the_bad_image_of_a_batch_is_named(signatures):
    _, serve_bytes, serve_tensor = signatures
    good = _encode(_image(3), "PNG")
    with pytest.raises(tf.errors.InvalidArgumentError, match="image 1 of 3: not a JPEG, PNG, BMP or GIF"):
        serve_bytes(image_bytes=tf.constant([good, b"garbage" * 10, good]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected a 1-D batch of encoded images"):
        serve_bytes(image_bytes=tf.constant(good))  # A scalar, not a batch.
    _ok(serve_bytes, serve_tensor)


@pytest.mark.parametrize("name,images,message", [
    ("nan", np.full((1, SIZE, SIZE, 3), np.nan), "image 0 of 1: NaN or infinite pixel values"),
    ("inf in the second image", np.stack([np.zeros((SIZE, SIZE, 3)), np.full((SIZE, SIZE, 3), np.inf)]),
     "image 1 of 2: NaN or infinite"),
    ("1e6", np.full((1, SIZE, SIZE, 3), 1e6), r"image 0 of 1: pixel values span \[1e\+06, 1e\+06\], outside 0..255"),
    ("-1e6", np.full((1, SIZE, SIZE, 3), -1e6), "outside 0..255"),
    ("scaled to 0..1", np.random.default_rng(0).uniform(0, 1, (1, SIZE, SIZE, 3)), "as if scaled to 0..1"),
    ("scaled to -1..1", np.random.default_rng(0).uniform(-1, 1, (1, SIZE, SIZE, 3)), "as if scaled to 0..1 or -1..1"),
    # A binary image scaled to 0..1: as raw pixels it would be all but black (a confident wrong answer).
    ("binary 0..1", (_image(3)[None] > 127).astype(np.float32),
     r"image 0 of 1: all pixel values lie in \[-1, 1\] \(span \[0, 1\]\).*uint8 pixels to the serve_uint8 signature"),
    ("rank 3", np.zeros((SIZE, SIZE, 3)), r"expected shape \[batch, 16, 16, 3\].*got shape \[16 16 3\]"),
    ("one channel", np.zeros((1, SIZE, SIZE, 1)), r"expected shape \[batch, 16, 16, 3\].*got shape \[1 16 16 1\]"),
    ("other size", np.zeros((1, 32, 32, 3)), r"got shape \[1 32 32 3\]"),
])
def test_bad_tensors_are_refused_by_name(signatures, name, images, message):
    _, serve_bytes, serve_tensor = signatures
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve_tensor(images=tf.constant(images.astype(np.float32)))
    _ok(serve_bytes, serve_tensor)


def test_edge_pixels_are_accepted(signatures):
    _, _, serve_tensor = signatures
    black = np.zeros((1, SIZE, SIZE, 3), np.float32)  # The same on every scale.
    overshoot = np.clip(_image(4)[None].astype(np.float32) * 1.003 - 0.4, -0.5, 255.7)  # Resampling overshoot.
    for images in (black, overshoot, black + 2):
        assert np.isfinite(serve_tensor(images=tf.constant(images))["probabilities"].numpy()).all()


def test_saved_model_cli_run_on_a_png(signatures, tmp_path):
    path, serve_bytes, _ = signatures
    png = tmp_path / "image.png"
    png.write_bytes(_encode(_image(6), "PNG"))
    expected = serve_bytes(image_bytes=tf.constant([png.read_bytes()]))["probabilities"].numpy()[0]
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable)) or "saved_model_cli"
    # As in the README: the PNG's bytes as a one-element batch in a .npy file. (`--input_exprs`
    # cannot carry them: saved_model_cli splits its text on ';' and '=' before parsing.)
    np.save(tmp_path / "image.npy", np.array([png.read_bytes()]))
    result = subprocess.run(
        [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"image_bytes={tmp_path / 'image.npy'}"], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout.split("Result for output key probabilities:")[1].split("Result for")[0]
    printed = np.array([float(v) for v in text.replace("[", " ").replace("]", " ").split()])
    np.testing.assert_allclose(printed, expected, atol=1e-4)


def test_uint8_pixels_are_the_unambiguous_tensor_input(loaded):
    by_name = loaded[3]
    images = np.stack([_image(6), (_image(7) > 127).astype(np.uint8)])  # The second: pixels 0 and 1.
    uint8 = by_name["serve_uint8"](images=tf.constant(images))["probabilities"].numpy()
    floats = by_name["serve_tensor"](images=tf.constant(images[:1].astype(np.float32)))["probabilities"].numpy()
    np.testing.assert_allclose(uint8[:1], floats, atol=1e-6)
    assert np.isfinite(uint8).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected shape \[batch, 16, 16, 3\] \(uint8 0-255"):
        by_name["serve_uint8"](images=tf.zeros((1, 8, SIZE, 3), tf.uint8))


def test_an_empty_batch_gets_empty_outputs_from_every_signature(loaded):
    by_name = loaded[3]
    requests = {"serving_default": {"image_bytes": tf.constant([], tf.string)},
                "serve_uint8": {"images": tf.zeros((0, SIZE, SIZE, 3), tf.uint8)},
                "serve_tensor": {"images": tf.zeros((0, SIZE, SIZE, 3))}}
    for name, request in requests.items():
        out = by_name[name](**request)
        assert out["probabilities"].shape == (0, 3) and out["top_k_labels"].shape == (0, 3), name
