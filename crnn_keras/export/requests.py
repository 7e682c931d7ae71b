"""In-graph checks of serving requests: every bad request fails with an
`InvalidArgument` error that names the image and the problem.

`decode_image_bytes` reads each image's header itself (PNG IHDR, every GIF
frame, BMP info header with top-down heights, JPEG SOF) before decoding, so a
bad or truncated file is refused with a message such as
`image 1 of 3: truncated PNG: ...` rather than raw decoder text, and a header
that claims too many pixels is refused before any memory is allocated.
`check_pixels` checks the shape, finiteness, range and scale of a float pixel
tensor; `check_uint8_pixels` the shape of a uint8 one.
"""

from __future__ import annotations

import tensorflow as tf

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAGIC = {"jpeg": b"\xff\xd8\xff", "png": PNG_SIGNATURE, "gif": b"GIF8", "bmp": b"BM"}
MIN_BYTES = 26
# serve_tensor refuses pixels outside this range (0..255 with a margin for
# resampling overshoot), and images that lie within [-1, 1] (scaled to 0..1).
PIXEL_RANGE = (-1.0, 256.0)
_HEAD = 64  # Header bytes read; enough for every format's size fields.


def _be32(h, i):
    return h[i] * 16777216 + h[i + 1] * 65536 + h[i + 2] * 256 + h[i + 3]


def _le(h, i, n):
    return sum(h[i + k] * (256**k) for k in range(n))


def _signed32(value):
    return tf.where(value >= 2**31, value - 2**32, value)


def _contains(raw, pattern: bytes):
    """Whether the uint8 tensor `raw` holds the byte sequence `pattern`."""
    count = tf.maximum(tf.size(raw) - len(pattern) + 1, 0)
    found = tf.ones([count], tf.bool)
    for i, byte in enumerate(pattern):
        found &= tf.equal(raw[i:i + count], byte)
    return tf.reduce_any(found)


def _first_error(*checks):
    """The message of the first failed `(ok, message)` check, else `""`."""
    error = tf.constant("")
    for ok, message in reversed(checks):
        error = tf.where(ok, error, message)
    return error


def _png(data, head, raw):
    width, height = _be32(head, 16), _be32(head, 20)
    return width, height, tf.constant(1, tf.int64), _first_error(
        (tf.equal(tf.strings.substr(data, 12, 4), b"IHDR"),
         "not a valid PNG: no IHDR header after the signature"),
        ((width > 0) & (height > 0) & (width < 2**31) & (height < 2**31),
         tf.strings.format("not a valid PNG: size {} x {} in the IHDR header", (width, height))),
        (_contains(raw[33:], b"IEND"), "truncated PNG: no IEND chunk after the image data"),
    )


def _gif(data, head, raw):
    """Walks the GIF's blocks: every frame's size counts (the decoder allocates
    frames x the largest frame), and the walk must reach the trailer."""
    n = tf.cast(tf.size(raw), tf.int64)
    at = lambda i: tf.cast(tf.gather(raw, tf.clip_by_value(i, 0, n - 1)), tf.int64)  # noqa: E731
    table = lambda flags: tf.where(flags >= 128, 3 * tf.bitwise.left_shift(  # noqa: E731
        tf.constant(1, tf.int64), flags % 8 + 1), 0)

    def skip_sub_blocks(pos):
        return tf.while_loop(lambda p: (p < n) & (at(p) > 0), lambda p: [p + at(p) + 1], [pos])[0] + 1

    def step(pos, frames, max_w, max_h, ended, done):
        kind = at(pos)
        is_frame = tf.equal(kind, 0x2C)
        w, h = at(pos + 5) + 256 * at(pos + 6), at(pos + 7) + 256 * at(pos + 8)
        after = tf.where(is_frame, pos + 11 + table(at(pos + 9)), pos + 2)
        next_pos = tf.cond(is_frame | tf.equal(kind, 0x21), lambda: skip_sub_blocks(after), lambda: pos)
        frame = tf.cast(is_frame, tf.int64)
        return (next_pos, frames + frame, tf.maximum(max_w, w * frame), tf.maximum(max_h, h * frame),
                tf.equal(kind, 0x3B), ~(is_frame | tf.equal(kind, 0x21)))

    zero = tf.constant(0, tf.int64)
    _, frames, max_w, max_h, ended, _ = tf.while_loop(
        lambda pos, *rest: (pos < n) & ~rest[-1], step,
        [13 + table(head[10]), zero, zero, zero, tf.constant(False), tf.constant(False)])
    width, height = _le(head, 6, 2), _le(head, 8, 2)
    return tf.maximum(width, max_w), tf.maximum(height, max_h), frames, _first_error(
        (tf.strings.regex_full_match(tf.strings.substr(data, 0, 6), "GIF8[79]a"),
         "not a valid GIF: the signature is not GIF87a or GIF89a"),
        ((width > 0) & (height > 0),
         tf.strings.format("not a valid GIF: size {} x {} in the header", (width, height))),
        (ended & (frames > 0), "truncated or corrupt GIF: its blocks do not end with the GIF trailer"),
    )


def _bmp(data, head, raw):
    length = tf.cast(tf.size(raw), tf.int64)
    info = _le(head, 14, 4)
    core = tf.equal(info, 12)  # OS/2 BITMAPCOREHEADER: 16-bit unsigned sizes.
    width = tf.where(core, _le(head, 18, 2), _signed32(_le(head, 18, 4)))
    height = tf.where(core, _le(head, 20, 2), _signed32(_le(head, 22, 4)))  # < 0: top-down.
    bits = tf.where(core, _le(head, 24, 2), _le(head, 28, 2))
    compression = tf.where(core, tf.constant(0, tf.int64), _le(head, 30, 4))
    offset = _le(head, 10, 4)
    row = (bits * width + 31) // 32 * 4
    # Uncompressed rows (BI_RGB, BI_BITFIELDS) must all be in the file.
    needed = tf.where((compression == 0) | (compression == 3), offset + row * tf.abs(height), 0)
    return width, tf.abs(height), tf.constant(1, tf.int64), _first_error(
        (info >= 40, tf.strings.format(
            "BMP with a {}-byte info header (OS/2): not supported; send PNG or a Windows BMP", info)),
        ((bits == 24) | (bits == 32), tf.strings.format(
            "BMP with {}-bit pixels: only 24- and 32-bit BMPs decode correctly; send PNG", bits)),
        ((width > 0) & (height != 0),
         tf.strings.format("not a valid BMP: size {} x {} in the header", (width, height))),
        (needed <= length, tf.strings.format(
            "truncated BMP: the header says {} x {} pixels at {} bits from byte {} but the file "
            "has {} bytes", (width, tf.abs(height), bits, offset, length))),
    )


def _jpeg(data, head, raw):
    ended = _contains(raw[2:], b"\xff\xd9")  # Anywhere: data may follow (motion photos).

    def size():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    height, width = tf.cond(ended, size, lambda: (tf.constant(0, tf.int64), tf.constant(0, tf.int64)))
    return width, height, tf.constant(1, tf.int64), _first_error(
        (ended, "truncated or corrupt JPEG: no end-of-image marker"),
        ((width > 0) & (height > 0), "not a valid JPEG: no image size in its header"),
    )


def _decode_one(index, count, data, channels: int, size, max_pixels: int):
    prefix = tf.strings.format("image {} of {}: ", (index, count))

    def require(ok, message):
        return tf.debugging.Assert(ok, [tf.strings.join([prefix, message])])

    length = tf.cast(tf.strings.length(data), tf.int64)
    formats = {k: tf.equal(tf.strings.substr(data, 0, len(m)), m) for k, m in MAGIC.items()}
    known = formats["jpeg"] | formats["png"] | formats["gif"] | formats["bmp"]
    with tf.control_dependencies([
        require(length >= MIN_BYTES, tf.strings.format(
            "{} bytes, too short to be a JPEG, PNG, BMP or GIF image", length)),
        require(known, "not a JPEG, PNG, BMP or GIF image"),
    ]):
        data = tf.identity(data)
    raw = tf.io.decode_raw(data, tf.uint8)
    head = tf.cast(tf.pad(raw[:_HEAD], [[0, _HEAD - tf.minimum(tf.size(raw), _HEAD)]]), tf.int64)
    width, height, frames, error = tf.case(
        [(formats[name], lambda f=f: f(data, head, raw))
         for name, f in (("png", _png), ("gif", _gif), ("bmp", _bmp))],
        default=lambda: _jpeg(data, head, raw),
        exclusive=True,
    )
    with tf.control_dependencies([require(tf.equal(error, ""), error)]):
        pixels = tf.identity(width * height * frames)
    size_text = tf.strings.format("{} x {}", (width, height))
    size_text = tf.where(frames > 1, tf.strings.format("{} frames of {} x {}", (frames, width, height)),
                         size_text)
    with tf.control_dependencies([require(pixels <= max_pixels, tf.strings.join([
            size_text, tf.strings.format(" = {} pixels, over the limit max_pixels={}", (pixels, max_pixels))]))]):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    image = tf.image.resize(tf.cast(image, tf.float32), size)
    return tf.ensure_shape(image, tuple(size) + (channels,))


def _runtime_shape(x, rank: int):
    """`tf.shape(x)` padded with -1 to `rank + 1` entries, at run time.

    A fed tensor may have another rank than the signature declares, and
    TensorFlow folds checks on the static rank away; this one it cannot.
    """
    return tf.concat([tf.shape(x, out_type=tf.int64), -tf.ones([rank + 1], tf.int64)], 0)[: rank + 1]


def _only_if(ok, message, value, placeholder):
    """`value` where `ok`, else an `InvalidArgument` error with `message`.

    A branch, not a control dependency: TensorFlow may drop a reshape that the
    signature's static shape makes look redundant, and with it the ordering, so
    the ops after a failed check could run first and fail with their own text."""
    def refuse():
        with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
            return tf.identity(placeholder)
    return tf.cond(ok, lambda: tf.identity(value), refuse)


def decode_image_bytes(image_bytes, channels: int, size, max_pixels: int):
    """A `[batch]` string tensor of encoded images -> `[batch, *size, channels]` float32."""
    shape = _runtime_shape(image_bytes, 1)
    image_bytes = _only_if(
        (shape[0] >= 0) & tf.equal(shape[1], -1),
        tf.strings.format("image_bytes: expected a 1-D batch of encoded images (a list, also for one image), "
                          "got a tensor of shape {}", tf.shape(image_bytes)),
        tf.reshape(image_bytes, [-1]), tf.constant([], tf.string))
    count = tf.size(image_bytes)
    return tf.map_fn(
        lambda args: _decode_one(args[0], count, args[1], channels, size, max_pixels),
        (tf.range(count), image_bytes),
        fn_output_signature=tf.TensorSpec(tuple(size) + (channels,), tf.float32),
    )


def _check_shape(images, height: int | None, width: int | None, channels: int, what: str):
    """`images` after a run-time check of its `[batch, height, width, channels]` shape."""
    shape = _runtime_shape(images, 4)
    expected = [height if height is not None else -2, width if width is not None else -2, channels]
    dims_ok = [tf.equal(shape[i + 1], d) if d != -2 else shape[i + 1] >= 0
               for i, d in enumerate(expected)]
    text = "[batch, {}, {}, {}]".format(*(d if d != -2 else "any" for d in expected))
    shape_ok = tf.equal(shape[4], -1) & (shape[0] >= 0) & tf.reduce_all(tf.stack(dims_ok))
    message = tf.strings.format("images: expected shape " + text + f" ({what}), got shape {{}}", tf.shape(images))
    placeholder = tf.zeros([0, height or 0, width or 0, channels], images.dtype)
    return _only_if(shape_ok, message, images, placeholder)


def check_uint8_pixels(images, height: int | None, width: int | None, channels: int):
    """Checks the shape of a `[batch, height, width, channels]` uint8 tensor of
    0-255 pixels (the unambiguous tensor input); returns it as float32."""
    return tf.cast(_check_shape(images, height, width, channels, "uint8 0-255 pixels"), tf.float32)


def check_pixels(images, height: int | None, width: int | None, channels: int):
    """Checks a `[batch, height, width, channels]` tensor of float 0-255 pixels.

    Refuses another shape, NaN or infinite values, values outside
    `PIXEL_RANGE`, and images whose values all lie in [-1, 1] but for an all-zero
    one (scaled to 0..1 or -1..1; a binary 0/1 image included: as raw pixels it
    would be all but black, so uint8 pixels go to `serve_uint8`). `None` height or
    width accept any size.
    """
    images = tf.cast(_check_shape(images, height, width, channels, "float 0-255 pixels"), tf.float32)
    count = tf.shape(images)[0]
    axes = [1, 2, 3]
    finite = tf.reduce_all(tf.math.is_finite(images), axis=axes)
    safe = tf.where(tf.math.is_finite(images), images, 0.0)
    low, high = tf.reduce_min(safe, axis=axes), tf.reduce_max(safe, axis=axes)
    in_range = (low >= PIXEL_RANGE[0]) & (high <= PIXEL_RANGE[1])
    # All zeros read the same on every scale; any other image within [-1, 1] is ambiguous.
    unit_scaled = (low >= -1.0) & (high <= 1.0) & ((low < 0.0) | (high > 0.0))

    def first(bad):
        return tf.cast(tf.argmax(tf.cast(bad, tf.int32)), tf.int32)

    checks = [
        (finite, lambda i: tf.strings.format(
            "image {} of {}: NaN or infinite pixel values; send finite 0-255 pixels", (i, count))),
        (in_range, lambda i: tf.strings.format(
            "image {} of {}: pixel values span [{}, {}], outside 0..255; send raw 0-255 pixels",
            (i, count, low[i], high[i]))),
        (~unit_scaled, lambda i: tf.strings.format(
            "image {} of {}: all pixel values lie in [-1, 1] (span [{}, {}]), as if scaled to 0..1 or -1..1; "
            "serve_tensor takes raw 0-255 pixels (the model scales them itself): send those, or uint8 pixels "
            "to the serve_uint8 signature", (i, count, low[i], high[i]))),
    ]
    asserts = []
    for ok, message in checks:
        bad = ~ok
        asserts.append(tf.debugging.Assert(
            ~tf.reduce_any(bad),
            [tf.cond(tf.reduce_any(bad), lambda b=bad, m=message: m(first(b)), lambda: tf.constant(""))],
        ))
        with tf.control_dependencies(asserts):  # In order: shape, finite, range, scale.
            images = tf.identity(images)
    return images
