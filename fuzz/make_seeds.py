"""Write the small seed inputs of the fuzz harnesses that a script can make
(fuzz/seeds/<harness>/). Run with /usr/bin/python3 from the repository root;
the optimizer state seeds come from the harnesses themselves (make fuzz-seeds).
Each seed is a small valid file, so that the fuzzers start past the first checks."""
import gzip
import io
import json
import os
import struct
import zlib

from PIL import Image

ROOT = "fuzz/seeds"


def put(harness, name, data):
    os.makedirs(os.path.join(ROOT, harness), exist_ok=True)
    with open(os.path.join(ROOT, harness, name), "wb") as f:
        f.write(data)


def two_files(a, b):
    """the input of a harness reading two files (fuzz_split2 in fuzz/fuzz.h)"""
    assert len(a) < 65536
    return struct.pack("<H", len(a)) + a + b


# GPT-2's byte <-> character map (the printable bytes stand for themselves,
# the others for the characters from U+0100 on), written from its definition
def byte_chars():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def bpe_seed():
    ch = byte_chars()
    enc = {ch[b]: b for b in range(256)}
    merges = []
    def merge(a, b):
        enc[a + b] = len(enc)
        merges.append(a + " " + b)
    merge("h", "e")
    merge("l", "l")
    merge("he", "ll")
    merge("hell", "o")
    merge(ch[ord(" ")], "w")
    merge("o", "r")
    merge(ch[ord(" ")] + "w", "or")
    enc["<|endoftext|>"] = len(enc)
    encoder = json.dumps(enc, ensure_ascii=False).encode()
    vocab = ("#version: 0.2\n" + "\n".join(merges) + "\n").encode()
    return encoder, vocab


def llmc_tokenizer(tokens, eot):
    header = [20240328, 2, len(tokens), eot] + [0] * 252
    body = b"".join(bytes([len(t)]) + t for t in tokens)
    return struct.pack("<256I", *header) + body


def idx_pair(n, rows, cols, labels):
    images = struct.pack(">4I", 2051, n, rows, cols) + bytes((i * 37) % 256 for i in range(n * rows * cols))
    return images, struct.pack(">2I", 2049, n) + bytes(labels)


def image(fmt, mode, size):
    img = Image.new(mode, size)
    img.putdata([tuple((x * 50 + y * 20 + c * 90) % 256 for c in range(len(mode))) if len(mode) > 1
                 else (x * 50 + y * 20) % 256 for y in range(size[1]) for x in range(size[0])])
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def undefined_huffman_jpeg(jpeg):
    """A baseline JPEG whose first scan component uses DC and AC tables 2, which
    no DHT segment defines (stb_image then decoded with a table of whatever the
    heap held: an assert, found by fuzz_image_file, or reads out of bounds)"""
    d = bytearray(jpeg)
    i = 2
    while d[i + 1] != 0xDA:  # walk the segments to the start of scan
        i += 2 + (d[i + 2] << 8 | d[i + 3])
    assert d[i + 4] == 3 and d[i + 5] == 1  # three components, the first is Y
    d[i + 6] = 0x22
    return bytes(d)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def png_filter_row(kind, row, prev, bpp):
    """PNG filter `kind` (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth) of one row of bytes"""
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out[i] = (x - pred) % 256
    return bytes([kind]) + bytes(out)


def png_unfilter(raw, width, height, bpp):
    """the rows of a PNG's inflated image data, unfiltered (an 8-bit, non-interlaced image)"""
    stride = width * bpp
    prev, rows, p = bytearray(stride), [], 0
    for _ in range(height):
        kind, row = raw[p], bytearray(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            row[i] = (row[i] + [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]) % 256
        rows.append(bytes(row))
        prev = row
    assert p == len(raw)
    return b"".join(rows)


def png_decode_rgb8(png):
    """an independent decoder of 8-bit RGB PNGs (zlib and the five filters): the
    concatenated IDAT chunks, inflated and unfiltered, as HWC bytes"""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    p, idat, width, height = 8, b"", 0, 0
    while p < len(png):
        n, kind = struct.unpack(">I4s", png[p:p + 8])
        data = png[p + 8:p + 8 + n]
        assert struct.unpack(">I", png[p + 8 + n:p + 12 + n])[0] == zlib.crc32(kind + data)
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data)
            assert depth == 8 and colour == 2 and interlace == 0
        elif kind == b"IDAT":
            idat += data
        p += 12 + n
    return png_unfilter(zlib.decompress(idat), width, height, 3), width, height


def empty_first_idat_png(width=7, height=5):
    """An 8-bit RGB PNG whose first IDAT chunk is empty (legal: the image data is
    the concatenation of all IDAT chunks), then the data in two chunks with
    another empty one between them; its rows use the five filters in turn.
    Debian's stb_image computed NULL + 0 on the first chunk (UBSan, found by
    fuzz_image_file). Returns the file and its pixels (HWC)."""
    pixels = bytes((x * 37 + y * 91 + c * 53 + x * y * 7) % 256
                   for y in range(height) for x in range(width) for c in range(3))
    stride, raw, prev = width * 3, b"", bytes(width * 3)
    for y in range(height):
        row = pixels[y * stride:(y + 1) * stride]
        raw += png_filter_row(y % 5, row, prev, 3)
        prev = row
    z = zlib.compress(raw, 9)
    half = len(z) // 2
    png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
           png_chunk(b"IDAT", b"") + png_chunk(b"IDAT", z[:half]) + png_chunk(b"IDAT", b"") +
           png_chunk(b"IDAT", z[half:]) + png_chunk(b"IEND", b""))
    assert png_decode_rgb8(png) == (pixels, width, height)
    return png, pixels


def many_scans_jpeg(repeats=600):
    """A progressive JPEG whose last scan is repeated: more scans than the 500
    the loader allows (each scan is a pass over the whole image, so a small
    file of many scans could keep the decoder busy for minutes)"""
    img = Image.new("RGB", (16, 16))
    img.putdata([((x * 16) % 256, (y * 16) % 256, 77) for y in range(16) for x in range(16)])
    out = io.BytesIO()
    img.save(out, format="JPEG", progressive=True, quality=90)
    d = out.getvalue()
    assert d[-2:] == b"\xff\xd9"
    last_sos = max(i for i in range(len(d) - 1) if d[i] == 0xFF and d[i + 1] == 0xDA)
    return d[:-2] + d[last_sos:-2] * repeats + b"\xff\xd9"


def main():
    tokens = [bytes([b]) for b in range(256)] + [b"he", b"llo", b" world", b"<|endoftext|>"]
    put("tokenizer_llmc", "small.bin", llmc_tokenizer(tokens, 259))

    encoder, vocab = bpe_seed()
    put("bpe", "small.bin", two_files(encoder, vocab))

    put("slimadam_rules", "rules.json", json.dumps({
        "wte": [0], "wpe": [0, 1], "h0.ln1w": None, "h0.ln1b": [], "h0.attn.qkvw.q": [0],
        "h0.attn.qkvw.k": [0, 1], "h0.attn.qkvw.v": [1], "h0.attn.qkvb": [0], "h0.attn.projw": [1],
        "h0.mlp.fcw": [0, 1], "h0.mlp.projw": None, "lnfw": [0]}, indent=2).encode())
    put("slimadam_rules", "empty.json", b"{}\n")

    state = {"train_loader": {"shard": "1", "batch": "1", "epoch": "2", "shuffle": True, "shuffle_seed": "42"},
             "sample_rng": "88172645463325252",
             "step": 7, "optimizer": "adamw", "micro_batch": 2, "seq_len": 4, "grad_accum": 3, "nan_skipped": 1,
             "elapsed_s": 12.5}
    put("resume_gpt2", "state.json", json.dumps(state, indent=2).encode())
    state = {"train_loader": {"images": "5", "epoch": "2", "pos": "4", "rng": "1234567"}, "step": 7,
             "optimizer": "adamw", "micro_batch": 2, "seq_len": 0, "grad_accum": 1, "nan_skipped": 0,
             "elapsed_s": 3.25}
    put("resume_vit", "state.json", json.dumps(state, indent=2).encode())

    images, labels = idx_pair(3, 2, 2, [0, 9, 4])
    put("idx", "plain.bin", two_files(images, labels))
    put("idx", "gzip.bin", two_files(gzip.compress(images, mtime=0), gzip.compress(labels, mtime=0)))

    put("image_file", "rgb.png", image("PNG", "RGB", (5, 3)))
    put("image_file", "grey.png", image("PNG", "L", (3, 4)))
    put("image_file", "rgb.bmp", image("BMP", "RGB", (5, 3)))
    put("image_file", "rgb.jpg", image("JPEG", "RGB", (8, 6)))
    put("image_file", "grey.jpg", image("JPEG", "L", (4, 4)))
    os.makedirs("fuzz/regressions/image_file", exist_ok=True)
    with open("fuzz/regressions/image_file/crafted_undefined_huffman.jpg", "wb") as f:
        f.write(undefined_huffman_jpeg(image("JPEG", "RGB", (8, 6))))
    with open("fuzz/regressions/image_file/crafted_600_scans.jpg", "wb") as f:
        f.write(many_scans_jpeg())
    # a PNG whose first IDAT is empty, and its pixels (7x5, HWC), the reference of test_images
    png, pixels = empty_first_idat_png()
    with open("fuzz/regressions/image_file/crafted_empty_first_idat.png", "wb") as f:
        f.write(png)
    with open("dev/testdata/empty_first_idat_7x5.rgb", "wb") as f:
        f.write(pixels)


if __name__ == "__main__":
    main()
