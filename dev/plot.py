"""Plot training logs (DIR/log.jsonl, written by train_gpt2 / train_vit -o DIR)
as PNG curves: training loss and the evaluation (val loss or test accuracy),
against steps and against wall-clock time, one line per run, labelled by
optimizer (and lr) from each log's config record.

    /usr/bin/python3 dev/plot.py -o curves.png out/run_a out/run_b/log.jsonl ...
    options: --title TEXT, --smooth N (moving average of the train loss, default 1)
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path):
    if os.path.isdir(path):
        path = os.path.join(path, "log.jsonl")
    config, steps, evals = None, [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                print(f"plot: {path}:{n}: skipping a malformed line", file=sys.stderr)
                continue
            if rec.get("type") == "config":
                config = config or rec  # a resumed run repeats it; keep the first
            elif "step" in rec and "lr" in rec and "ms" in rec:
                steps.append(rec)
            elif "step" in rec and ("val_loss" in rec or "test_acc" in rec):
                evals.append(rec)
    if not steps:
        raise SystemExit(f"plot: {path} has no step records")
    return path, config or {}, steps, evals


def label_of(config, path):
    opt = config.get("optimizer", {})
    name = opt.get("name", "?")
    lr = opt.get("lr")
    model = config.get("model", "")
    return f"{name} lr {lr:g}" if lr is not None else f"{name} ({os.path.dirname(path) or path}, {model})"


def smooth(values, n):
    if n <= 1:
        return values
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > n:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", help="run directories or log.jsonl files")
    ap.add_argument("-o", "--out", default="curves.png")
    ap.add_argument("--title", default=None)
    ap.add_argument("--smooth", type=int, default=1)
    args = ap.parse_args()
    runs = [read_log(p) for p in args.logs]
    has_eval = any(evals for _, _, _, evals in runs)
    rows = 2 if has_eval else 1
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4.2 * rows), squeeze=False)
    for path, config, steps, evals in runs:
        label = label_of(config, path)
        good = [r for r in steps if r.get("loss") is not None]
        x_step = [r["step"] for r in good]
        # wall time: cumulative step time (excludes evaluation and checkpoints)
        t, x_time = 0.0, []
        for r in steps:
            t += r["ms"] / 1000.0
            if r.get("loss") is not None:
                x_time.append(t / 60.0)
        loss = smooth([r["loss"] for r in good], args.smooth)
        line = axes[0][0].plot(x_step, loss, label=label, linewidth=1)[0]
        axes[0][1].plot(x_time, loss, label=label, linewidth=1, color=line.get_color())
        if evals:
            key = "val_loss" if "val_loss" in evals[0] else "test_acc"
            ex = [r["step"] for r in evals]
            ey = [r[key] for r in evals]
            # evaluation times: the step time elapsed when the evaluation ran
            elapsed = {r["step"]: 0.0 for r in steps}
            t = 0.0
            for r in steps:
                t += r["ms"] / 1000.0
                elapsed[r["step"]] = t / 60.0
            axes[1][0].plot(ex, ey, marker="o", markersize=3, label=label, color=line.get_color())
            axes[1][1].plot([elapsed.get(s, 0.0) for s in ex], ey, marker="o", markersize=3, label=label,
                            color=line.get_color())
            ylabel = "validation loss" if key == "val_loss" else "test accuracy"
            axes[1][0].set_ylabel(ylabel)
            axes[1][1].set_ylabel(ylabel)
    axes[0][0].set_ylabel("training loss" + (f" (moving average of {args.smooth})" if args.smooth > 1 else ""))
    axes[0][1].set_ylabel("training loss")
    for r in range(rows):
        axes[r][0].set_xlabel("step")
        axes[r][1].set_xlabel("training time (minutes, step time only)")
        for c in range(2):
            axes[r][c].grid(alpha=0.3)
            axes[r][c].legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"plot: wrote {args.out} ({len(runs)} run{'s' if len(runs) > 1 else ''})")


if __name__ == "__main__":
    main()
