"""Write llm.c's multiple-choice evaluation file (the format of HellaSwag's
hellaswag_val.bin), with Python's standard library only, so that the tests can
make one without PyTorch, NumPy or a download.

The format, as llm.c's dev/data/data_common.py (write_evalfile) defines it:
  - 256 int32 (little-endian): magic 20240522, version 1, number of examples,
    the longest example in bytes, then zeros;
  - per example, uint16 (little-endian): 65535 (START_EXAMPLE); the example's
    size in bytes, counting every uint16 of it from the 65535 on; its index
    (0, 1, ...); the label (index of the right completion); the number of
    completions; the context's length, then its tokens; per completion its
    length, then its tokens.

usage: evalfile.py EXAMPLES.json OUT.bin
  EXAMPLES.json: {"examples": [{"label": L, "ctx": [ids], "endings": [[ids], ...]}, ...]}
  (the file dev/eval_ref.py writes to dev/testdata/eval_ref.json)
"""
import json
import struct
import sys

MAGIC, VERSION, START = 20240522, 1, 65535


def example_stream(index, label, ctx, endings):
    """The uint16 values of one example, its size field filled in."""
    fields = [START, 0, index, label, len(endings), len(ctx)] + list(ctx)
    for e in endings:
        fields += [len(e)] + list(e)
    fields[1] = 2 * len(fields)
    for v in fields:
        if not 0 <= v <= 65535:
            raise ValueError(f"example {index}: value {v} does not fit a uint16")
    if fields[1] > 65535:
        raise ValueError(f"example {index} is {fields[1]} bytes, more than its uint16 size field holds")
    return fields


def write(path, examples):
    streams = [example_stream(i, ex["label"], ex["ctx"], ex["endings"]) for i, ex in enumerate(examples)]
    header = [MAGIC, VERSION, len(examples), max(s[1] for s in streams)] + [0] * 252
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        for s in streams:
            f.write(struct.pack(f"<{len(s)}H", *s))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[-1])
    write(sys.argv[2], json.load(open(sys.argv[1]))["examples"])
