"""make repro-memory: what each optimizer really needs to train GPT-2 at the
sizes of llm.c (d12 = 124M, d24 = 350M, d36 = 774M, d48 = XL, 1558M) at
B 1 x T 64, measured.

    /usr/bin/python3 repro/memory.py run       train what is not recorded yet, then write the report
    /usr/bin/python3 repro/memory.py run ID    only the runs whose id contains ID (gpt2_d48_adamw_b1_t64_fused)
    /usr/bin/python3 repro/memory.py report    only the report, from the records

Each run trains 3 steps on the Bible (no validation, no sample, no
checkpoint) and keeps one record, repro/records/memory/<id>.json: the exact
command and commit, the memory plan the trainer printed at start-up (its
items and total), the peak resident set it reached (getrusage), the plan's
error, and the step times. A run whose plan does not fit the memory available
is refused by the trainer at start-up (one line, nothing allocated); that is
recorded too, with the plan. The runs go one at a time, smallest first, and a
recorded one is never run again, so the target can be stopped and continued.
Besides the grid, GPT-2 124M at B 1 x T 1024 with each optimizer checks the
plan where activations (the attention weights) matter most, and the grid runs
again with --fused-update 1 (each block's update during the backward pass, one
layer's gradient buffer; with the default --clip 1 the backward runs twice,
first for the norm), so the table has the normal and the fused column side by
side. Other jobs share the machine: before a run that could fit here the
driver waits until MemAvailable holds its plan (plus 0.5 GiB), so a refusal in
the records is the run's own, not a neighbour's.

The trainers are built from a clean checkout of HEAD, as make repro-* do
(repro/repro.py). The report is repro/results/memory.md (the table) and
memory.png (peak resident set against parameters, per optimizer, beside
the plan's formula).
"""
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import repro  # noqa: E402  (build, git, write_json_atomic)

RECORDS = os.path.join(HERE, "records", "memory")
RESULTS = os.path.join(HERE, "results")
OPTIMS = ["adamw", "sgdm", "sgd_sai", "sinkgd", "slimadam"]
SIZES = ["d12", "d24", "d36", "d48"]
STEPS = 3
# one thread, like every repro target: this 2-core machine runs sweeps beside
# it, and two spinning OpenMP threads under contention measure the contention
THREADS = int(os.environ.get("MEMORY_THREADS", "1"))
DATA = "data/bible/bible_train_*.bin"


def runs():
    """The grid (every optimizer at every size, B 1 x T 64), then 124M at T 1024,
    then the grid with fused updates (XL last: the largest runs go last)."""
    out = [(size, o, 1, 64, 0) for size in SIZES for o in OPTIMS]
    out += [("d12", o, 1, 1024, 0) for o in OPTIMS]
    out += [(size, o, 1, 64, 1) for size in SIZES for o in OPTIMS]
    return [{"id": f"gpt2_{s}_{o}_b{b}_t{t}" + ("_fused" if f else ""), "model": s, "optim": o, "B": b, "T": t,
             "fused": f} for s, o, b, t, f in out]


def flags_of(run):
    return ["-e", run["model"], "-b", str(run["B"]), "-t", str(run["T"]), "-x", str(STEPS), "-s", "-1", "-p", "1",
            "-i", DATA] + (["--fused-update", "1"] if run.get("fused") else [])


def meminfo(key):
    with open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith(key + ":"):
                return int(ln.split()[1]) * 1024
    return None


def wait_for_memory(run, binary, env):
    """Wait until a run that would fit on this machine alone has its plan's
    memory available (another job may hold some for a while)."""
    p = subprocess.run([binary, *flags_of(run), "--memory-plan-only", "1", "--force-memory", "1"], cwd=ROOT, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    plan = parse_output(p.stdout)["plan_total_bytes"]
    if plan is None or plan > meminfo("MemTotal") - 2**30:
        return  # it cannot fit here in any case: the trainer refuses it, and that is recorded
    waited = 0
    while meminfo("MemAvailable") < plan + 2**29:
        if waited % 300 == 0:
            print(f"repro memory: {run['id']} plans {gib(plan)}, {gib(meminfo('MemAvailable'))} available: waiting",
                  flush=True)
        time.sleep(30)
        waited += 30


def command_of(run):
    b = repro.binary_path("gpt2", run["optim"])
    flags = " ".join(f"'{f}'" if "*" in f else f for f in flags_of(run))
    return f"make {b} && OMP_NUM_THREADS={THREADS} {b} {flags}"


def parse_output(text):
    """The plan, the peak and the step times from a trainer's stdout and stderr."""
    lines = text.splitlines()
    out = {"plan": {}, "plan_total_bytes": None, "available": None, "peak_rss_bytes": None, "step_ms": [],
           "step_cpu_ms": [], "parameters": None}
    in_plan = False
    for ln in lines:
        m = re.search(r"(\d+) parameters \((\d+) with padding\)", ln)
        if m:
            out["parameters"] = int(m.group(1))
        if ln.startswith("memory plan ("):
            in_plan = True
            continue
        if in_plan:
            m = re.match(r"^  total\s+\S+ \S+\s+(\d+) bytes$", ln)
            if m:
                out["plan_total_bytes"] = int(m.group(1))
                continue
            m = re.match(r"^  available (\S+ \S+) \((.*), with what", ln)
            if m:
                out["available"] = f"{m.group(1)} ({m.group(2)})"
                in_plan = False
                continue
            if ln.startswith("  ") and len(ln) > 34:
                out["plan"][ln[2:20].strip()] = {"size": ln[21:32].strip(), "note": ln[34:].strip()}
                continue
            in_plan = False
        m = re.match(r"^memory: peak resident (\d+) bytes", ln)
        if m:
            out["peak_rss_bytes"] = int(m.group(1))
        m = re.match(r"^step (\d+)/\d+ \|.*\| (\d+) ms \|", ln)
        if m:
            out["step_ms"].append(int(m.group(2)))
        m = re.match(r"^step \d+/\d+ \|.*\| cpu (\d+) ms \|", ln)
        if m:
            out["step_cpu_ms"].append(int(m.group(1)))
    return out


def run_one(run, wt, commit):
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    binary = os.path.join(wt, repro.binary_path("gpt2", run["optim"]))
    wait_for_memory(run, binary, env)
    load = os.getloadavg()
    t0 = time.time()
    p = subprocess.run([binary, *flags_of(run)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    wall = time.time() - t0
    err = p.stderr.strip()
    refused = p.returncode == 1 and err.startswith("error: this run needs")
    if p.returncode != 0 and not refused:
        sys.exit(f"repro memory: {run['id']} failed (exit {p.returncode}): {err or p.stdout.strip()[-300:]}")
    got = parse_output(p.stdout)
    peak, plan = got["peak_rss_bytes"], got["plan_total_bytes"]
    return {
        "experiment": "memory", "id": run["id"], "trainer": "gpt2", "model": run["model"], "optim": run["optim"],
        "B": run["B"], "T": run["T"], "fused": run["fused"], "steps": STEPS, "threads": THREADS,
        "status": "refused" if refused else "ok", "refusal": err if refused else None,
        "parameters": got["parameters"], "plan": got["plan"], "plan_total_bytes": plan,
        "available": got["available"], "peak_rss_bytes": peak,
        "plan_error": None if refused else round((peak - plan) / plan, 5),
        "step_ms": got["step_ms"], "step_cpu_ms": got["step_cpu_ms"], "wall_s": round(wall, 1), "load_average_at_start": [round(x, 2) for x in load],
        "git_commit": commit, "command": command_of(run),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
    }


def load_records():
    if not os.path.isdir(RECORDS):
        return []
    recs = []
    for name in sorted(os.listdir(RECORDS)):
        if name.endswith(".json"):
            with open(os.path.join(RECORDS, name)) as f:
                recs.append(json.load(f))
    return recs


def cmd_run(only=None):
    todo = [r for r in runs() if not os.path.exists(os.path.join(RECORDS, r["id"] + ".json"))
            and (only is None or only in r["id"])]
    recorded = sum(os.path.exists(os.path.join(RECORDS, r["id"] + ".json")) for r in runs())
    print(f"repro memory: {recorded} of {len(runs())} runs recorded, {len(todo)} to run"
          + (f" (those with '{only}' in their id)" if only else ""), flush=True)
    if todo:
        if repro.git("status", "--porcelain", "--untracked-files=no"):
            print("repro memory: note: the working tree has uncommitted changes; the runs use a clean checkout of HEAD")
        commit = repro.git("rev-parse", "--short=12", "HEAD")
        print(f"repro memory: building the trainers at {commit} in out/repro/src/{commit}", flush=True)
        wt = repro.build(commit, sorted({repro.binary_path("gpt2", r["optim"]) for r in todo}))
        for i, run in enumerate(todo):
            rec = run_one(run, wt, commit)
            repro.write_json_atomic(os.path.join(RECORDS, run["id"] + ".json"), rec)
            what = (f"refused at start-up: {rec['refusal']}" if rec["status"] == "refused" else
                    f"peak {gib(rec['peak_rss_bytes'])}, plan {gib(rec['plan_total_bytes'])} "
                    f"({100 * rec['plan_error']:+.2f}%), steps {rec['step_ms']} ms")
            print(f"[{i + 1}/{len(todo)}] {run['id']}: {what} ({rec['wall_s']:.0f} s)", flush=True)
    cmd_report()


# ---------------------------------------------------------------------------
# the report

def gib(b):
    return "-" if b is None else f"{b / 2**30:.2f} GiB"


# what the plan's lines are made of, per parameter (fp32), besides the activations
FORMULA = {"adamw": "4 + 4 + 8 B/param (m, v)", "sgdm": "4 + 4 + 4 B/param (buf)", "sgd_sai": "4 + 4 + 4 B/param (buf)",
           "sinkgd": "4 + 4 + 8 B/param of the non-matrix blocks", "slimadam": "4 + 4 + 4 B/param (m) + compressed v"}
NAMES = {"adamw": "AdamW", "sgdm": "SGDM", "sgd_sai": "SGD-SaI", "sinkgd": "SinkGD", "slimadam": "SlimAdam"}
LABELS = {"d12": "124M (d12)", "d24": "350M (d24)", "d36": "774M (d36)", "d48": "1558M (d48, XL)"}


def step_time(rec):
    later = rec["step_ms"][1:]  # step 1 also faults every page in
    if not later:
        return "-"
    cpu = rec.get("step_cpu_ms", [])[1:]  # the process's CPU time: the work, apart from waiting for a core
    return f"{sum(later) / len(later) / 1000:.1f} s" + (f" (cpu {sum(cpu) / len(cpu) / 1000:.1f} s)" if cpu else "")


def cmd_report():
    recs = {r["id"]: r for r in load_records()}
    if not recs:
        sys.exit("repro memory: no records yet (make repro-memory)")
    os.makedirs(RESULTS, exist_ok=True)
    mem_total = None
    with open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith("MemTotal:"):
                mem_total = int(ln.split()[1]) * 1024
    def cells(r):
        if not r:
            return ["", "", "", ""]
        err = "-" if r["plan_error"] is None else f"{100 * r['plan_error']:+.2f}%"
        if r["status"] == "refused":
            return [gib(r["plan_total_bytes"]), "refused at start-up", "-", "-"]
        return [gib(r["plan_total_bytes"]), gib(r["peak_rss_bytes"]), err, step_time(r)]

    rows = ["| model | optimizer | B x T | plan | peak resident | plan error | step (2-3) "
            "| fused: plan | peak resident | plan error | step (2-3) |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    worst = 0.0
    for run in runs():
        if run["fused"]:
            continue
        r = recs.get(run["id"])
        f = recs.get(run["id"] + "_fused") if run["T"] == 64 else None
        if not r and not f:
            continue
        for x in (r, f):
            if x and x["plan_error"] is not None:
                worst = max(worst, abs(x["plan_error"]))
        rows.append(f"| {LABELS[run['model']]} | {NAMES[run['optim']]} | {run['B']} x {run['T']} | "
                    + " | ".join(cells(r)) + " | " + (" | ".join(cells(f)) if run["T"] == 64 else "not run | | |")
                    + " |")
    xl = [recs.get(f"gpt2_d48_{o}_b1_t64") for o in OPTIMS]
    fits = [NAMES[r["optim"]] + f" ({gib(r['peak_rss_bytes'])})" for r in xl if r and r["status"] == "ok"]
    refused = [NAMES[r["optim"]] + f" (plan {gib(r['plan_total_bytes'])})" for r in xl if r and r["status"] == "refused"]
    xlf = [recs.get(f"gpt2_d48_{o}_b1_t64_fused") for o in OPTIMS]
    fits_f = [NAMES[r["optim"]] + f" ({gib(r['peak_rss_bytes'])})" for r in xlf if r and r["status"] == "ok"]
    refused_f = [NAMES[r["optim"]] + f" (plan {gib(r['plan_total_bytes'])})" for r in xlf
                 if r and r["status"] == "refused"]
    threads = sorted({r["threads"] for r in recs.values()})
    commits = sorted({r["git_commit"] for r in recs.values()})
    md = [
        "# Memory: GPT-2 at llm.c's sizes, each optimizer (make repro-memory)",
        "",
        f"{STEPS} steps at B 1 x T 64 on the Bible (GPT-2 124M also at T 1024), normally and with "
        "--fused-update 1 (each block's update during the backward pass, one layer's gradient buffer; with the "
        "default --clip 1 the backward runs twice, first for the norm), "
        f"{', '.join(map(str, threads))} "
        f"thread(s), on a machine with {gib(mem_total)} of memory (MemTotal) and other jobs beside; "
        f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}. Plan: the total the trainer printed at "
        "start-up; peak resident: getrusage's maximum after the last step; step time: the mean of steps 2 and 3 "
        "(step 1 also faults the buffers in), wall clock and, where recorded, the process's CPU time (on a shared "
        "machine the wall clock also counts the time waiting for a core; see each record's load average). "
        "Records: repro/records/memory/.",
        "",
        *rows,
        "",
        f"Largest plan error: {100 * worst:.2f}%.",
        "",
        f"GPT-2 XL (d48) here: trains with {', '.join(fits) if fits else 'none'}; "
        f"refused at start-up: {', '.join(refused) if refused else 'none'}.",
        "",
        f"With --fused-update 1: trains with {', '.join(fits_f) if fits_f else 'none (not recorded yet)'}; "
        f"refused at start-up: {', '.join(refused_f) if refused_f else 'none'}.",
        "",
    ]
    with open(os.path.join(RESULTS, "memory.md"), "w") as f:
        f.write("\n".join(md))
    # the verdict lines alone, which make repro-memory puts into the README
    with open(os.path.join(RESULTS, "memory_summary.md"), "w") as f:
        f.write("\n".join(md[-7:]))
    print(f"repro memory: wrote repro/results/memory.md and memory_summary.md ({len(recs)} records)")
    plot(recs, mem_total)


def plot(recs, mem_total):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("repro memory: no matplotlib (Debian's python3-matplotlib); the plot is skipped")
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = dict(zip(OPTIMS, ["C3", "C0", "C2", "C1", "C4"]))
    markers = dict(zip(OPTIMS, ["o", "s", "^", "D", "v"]))
    for o in OPTIMS:
        grid = [recs.get(f"gpt2_{s}_{o}_b1_t64") for s in SIZES]
        grid = [r for r in grid if r and r["parameters"]]
        if not grid:
            continue
        ax.plot([r["parameters"] / 1e6 for r in grid], [r["plan_total_bytes"] / 2**30 for r in grid], "--",
                color=colors[o], lw=1, label=f"{NAMES[o]} plan: {FORMULA[o]}")
        ok = [r for r in grid if r["status"] == "ok"]
        ax.plot([r["parameters"] / 1e6 for r in ok], [r["peak_rss_bytes"] / 2**30 for r in ok], markers[o],
                mfc="none", mew=1.5, ms=7 + 2 * OPTIMS.index(o), color=colors[o], label=f"{NAMES[o]}: peak resident")
        fused = [recs.get(f"gpt2_{s}_{o}_b1_t64_fused") for s in SIZES]
        fused = [r for r in fused if r and r["status"] == "ok"]
        if fused:
            ax.plot([r["parameters"] / 1e6 for r in fused], [r["peak_rss_bytes"] / 2**30 for r in fused], markers[o],
                    ms=5, color=colors[o], label=f"{NAMES[o]} --fused-update 1: peak resident")
        bad = [r for r in grid if r["status"] == "refused"]
        if bad:
            ax.plot([r["parameters"] / 1e6 for r in bad], [r["plan_total_bytes"] / 2**30 for r in bad], "x",
                    color=colors[o], ms=10, mew=2, label=f"{NAMES[o]}: refused at start-up")
    if mem_total:
        ax.axhline(mem_total / 2**30, color="k", lw=0.8)
        ax.text(130, mem_total / 2**30 + 0.3, "this machine's memory (MemTotal)", fontsize=8)
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("GiB")
    ax.set_title("GPT-2 at B 1 x T 64: peak resident set and the memory plan\n"
                 "(plan = parameters + gradients + state + activations + scratch; filled: fused updates)",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.93))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "memory.png"), dpi=120)
    print("repro memory: wrote repro/results/memory.png")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "run"
    if what == "run":
        cmd_run(sys.argv[2] if len(sys.argv) > 2 else None)
    elif what == "report":
        cmd_report()
    else:
        sys.exit(__doc__)
