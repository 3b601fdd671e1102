#!/usr/bin/env python3
"""Read a smoke run's log.jsonl and extrapolate the full run's wall time.

The smoke run trains 2 optimizer steps of ACCUM_SMOKE micro-steps each at a
small micro-batch. Step 1 pays one-off costs (first touch of the freshly
allocated state, SGD-SaI's g-SNR, SlimAdam's rule set-up), so the estimate
uses step 2:

    micro-step (smoke)  = ms of step 2 / ACCUM_SMOKE
    micro-step (full)   = micro-step (smoke) * SCALE      (full micro-batch / smoke micro-batch:
                                                          every layer's work is per sequence or per image)
    full run            = STEPS * ACCUM * micro-step (full)

Evaluation and checkpoints are left out (see repro/paper_scale/README.md for
their share). Standard library only.

    eta.py LOG --smoke-accum N --smoke-micro B --micro B --steps S --accum A --what TEXT
"""
import argparse
import json
import math
import sys


def fmt_duration(s):
    if s < 2 * 3600:
        return f"{s / 60:.0f} minutes"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} hours"
    days = s / 86400
    if days < 365:
        return f"{days:.0f} days"
    return f"{days:.0f} days ({days / 365.25:.1f} years)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--smoke-accum", type=int, required=True)
    ap.add_argument("--smoke-micro", type=int, required=True)
    ap.add_argument("--micro", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--accum", type=int, required=True)
    ap.add_argument("--what", default="")
    ap.add_argument("--load", default="?")
    a = ap.parse_args()

    threads, step_ms, peak = None, {}, None
    with open(a.log) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "config":
                threads = r.get("threads")
            elif "ms" in r and "step" in r:
                loss = r.get("loss")
                if not isinstance(loss, (int, float)) or not math.isfinite(loss):
                    sys.exit(f"eta.py: {a.log}: step {r['step']} has loss {loss}; the smoke run must stay finite")
                step_ms[r["step"]] = r["ms"]
            if "peak_rss_bytes" in r:
                peak = r["peak_rss_bytes"]
    if 2 not in step_ms:
        sys.exit(f"eta.py: {a.log} has no finished step 2; the smoke run did not complete")

    micro_smoke = step_ms[2] / 1000.0 / a.smoke_accum
    scale = a.micro / a.smoke_micro
    micro_full = micro_smoke * scale
    total = a.steps * a.accum * micro_full
    print(f"smoke: step 2 took {step_ms[2] / 1000:.1f} s for {a.smoke_accum} micro-steps of micro-batch {a.smoke_micro} "
          f"-> {micro_smoke:.2f} s per micro-step ({threads} thread(s), load average {a.load} at the start)")
    if peak is not None:
        print(f"smoke: peak memory {peak / 2**30:.2f} GiB at the last evaluation (micro-batch {a.smoke_micro})")
    print(f"full run: {a.steps} steps x {a.accum} micro-steps x {micro_full:.1f} s "
          f"(micro-step scaled x{scale:g} to micro-batch {a.micro}){' ' + a.what if a.what else ''}")
    print(f"estimated full run on this machine: {fmt_duration(total)} "
          f"(training micro-steps only, {threads} thread(s))")


if __name__ == "__main__":
    main()
