"""The reproduction driver: trains the runs of an experiment (repro/experiments.py),
skipping those already recorded, and writes one record per finished run to
repro/records/<experiment>/<run id>.json.

    /usr/bin/python3 repro/repro.py run vit [-j 2]      train what is missing (resumable)
    /usr/bin/python3 repro/repro.py check RECORD...     rerun recorded commands, compare metrics
    /usr/bin/python3 repro/repro.py list vit            the runs and which are done

The trainers are built from a clean checkout of HEAD (a git worktree under
out/repro/src/<commit>), so that work in progress in the working tree never
leaks into a recorded run, and every record names the commit that produced it.
A run interrupted half-way continues from its last checkpoint (-y 1) on the
next invocation; a record is written only when the run has finished.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import experiments  # noqa: E402

# REPRO_RECORDS and REPRO_OUT move both elsewhere (the driver's own test)
RECORDS = os.environ.get("REPRO_RECORDS", os.path.join(HERE, "records"))
OUT = os.environ.get("REPRO_OUT", os.path.join("out", "repro"))  # relative to ROOT: logs, checkpoints (git-ignored)


def sh(cmd, cwd=ROOT, **kw):
    return subprocess.run(cmd, cwd=cwd, check=True, text=True, **kw)


def git(*args, cwd=ROOT):
    return sh(["git", *args], cwd=cwd, capture_output=True).stdout.strip()


def binary_path(trainer, optim):
    """The binary of one trainer and optimizer, relative to a checkout."""
    return f"build/release/bin/train_gpt2_{optim}" if trainer == "gpt2" else f"build/release/vit/train_vit_{optim}"


def checkout(commit):
    """A clean worktree of `commit` under out/repro/src/, sharing deps/ (the BPE files)."""
    wt = os.path.join(ROOT, "out", "repro", "src", commit)
    if not os.path.isdir(wt):
        os.makedirs(os.path.dirname(wt), exist_ok=True)
        git("worktree", "prune")  # forget worktrees whose folder was deleted
        git("worktree", "add", "--detach", wt, commit)
    deps = os.path.join(wt, "deps")
    if not os.path.exists(deps):
        os.symlink(os.path.join(ROOT, "deps"), deps)
    return wt


def build(commit, targets):
    wt = checkout(commit)
    # -o deps/.setup-done: the set-up ran in the main checkout (make setup)
    # a release build whatever called us: `make SANITIZE=1 test` passes its variables
    # down to sub-makes through MAKEFLAGS, and the recorded commands name release binaries
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SANITIZE")}
    sh(["make", "-s", "-j2", "-o", "deps/.setup-done", *targets], cwd=wt, stdout=subprocess.DEVNULL, env=env)
    return wt


def command_of(run, out_dir):
    """The shell command that reproduces a run, from the root of a checkout of
    the record's commit after `make data`."""
    b = binary_path(run["trainer"], run["optim"])
    flags = " ".join(shlex.quote(f) for f in run["flags"])
    return f"make {b} && OMP_NUM_THREADS={experiments.THREADS} {b} {flags} -o {shlex.quote(out_dir)}"


# ---------------------------------------------------------------------------
# reading a finished run's log into a record
def read_log(path):
    configs, steps, evals = [], [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if rec.get("type") == "config":
                configs.append(rec)
            elif "lr" in rec and "ms" in rec:
                steps.append(rec)
            elif "val_loss" in rec or "test_acc" in rec:
                evals.append(rec)
    return configs, steps, evals


def summarise(run, log_path, wall_s, returncode, stdout_tail, commit, command):
    configs, steps, evals = read_log(os.path.join(ROOT, log_path))
    cfg = configs[0]
    metric = run["metric"]
    last_eval = evals[-1] if evals else {}
    final_step = steps[-1]["step"] if steps else 0
    run_cfg = cfg["run"]
    planned = run_cfg["steps"]
    diverged = returncode != 0 or final_step < planned
    if run["trainer"] == "gpt2":
        seen = {"tokens": final_step * run_cfg["total_batch"]}
        curve = [[e["step"], e["val_loss"]] for e in evals]
    else:
        seen = {"images": final_step * run_cfg["total_batch"]}
        curve = [[e["step"], e.get("epoch"), e["test_acc"], e["test_loss"]] for e in evals]
    # the training loss, averaged over windows of `every` steps (the full log stays in out/)
    every = max(1, planned // 50)
    train = []
    for i in range(0, len(steps), every):
        w = [s["loss"] for s in steps[i:i + every] if s.get("loss") is not None]
        if w:
            train.append([steps[min(i + every, len(steps)) - 1]["step"], sum(w) / len(w)])
    final = {metric: (last_eval.get(metric) if not diverged else None)}
    if run["trainer"] == "vit" and not diverged:
        final["test_loss"] = last_eval.get("test_loss")
    return {
        "experiment": run["experiment"], "id": run["id"], "phase": run["phase"],
        "trainer": run["trainer"], "optim": run["optim"], "hp": run["hp"],
        "optimizer": cfg["optimizer"], "run": run_cfg,
        "model": cfg.get("gpt2") or cfg.get("vit") or cfg.get("model"),
        "steps_planned": planned, "steps_done": final_step, **seen,
        "status": "ok" if not diverged else "diverged",
        "stop_message": None if not diverged else stdout_tail,
        "metric": metric, "final": final,
        "eval_curve": curve, "train_loss": train,
        "wall_s": round(wall_s, 1), "resumed": len(configs) > 1,
        "peak_rss_bytes": max((e.get("peak_rss_bytes", 0) for e in evals), default=None),
        "optimizer_state_bytes": cfg.get("optimizer_state_bytes"),
        "adamw_state_bytes": cfg.get("adamw_state_bytes"),
        "threads": cfg.get("threads"), "git_commit": commit, "log": log_path,
        "command": command,
        **read_artifacts(run, os.path.dirname(log_path)),
    }


def read_artifacts(run, out_dir):
    """Measurement files a run writes beside its log (snr.jsonl, gsnr.jsonl,
    slimadam_rules.json), kept in the record: the logs are not committed."""
    art = {}
    for key, name in run.get("artifacts", {}).items():
        path = os.path.join(ROOT, out_dir, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            if name.endswith(".jsonl"):
                art[key] = [json.loads(line) for line in f if line.strip()]
            else:
                art[key] = json.load(f)
    for key, dest in run.get("keep_artifact", {}).items():
        src = os.path.join(ROOT, out_dir, run["artifacts"][key])
        if os.path.exists(src):
            os.makedirs(os.path.dirname(os.path.join(ROOT, dest)), exist_ok=True)
            with open(src) as f, open(os.path.join(ROOT, dest) + ".tmp", "w") as g:
                g.write(f.read())
            os.replace(os.path.join(ROOT, dest) + ".tmp", os.path.join(ROOT, dest))
            art.setdefault("kept", {})[key] = dest
    return {"artifacts": art} if art else {}


def record_path(exp, run_id):
    return os.path.join(RECORDS, exp, run_id + ".json")


def load_records(exp):
    d = os.path.join(RECORDS, exp)
    if not os.path.isdir(d):
        return []
    out = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".json"):
            with open(os.path.join(d, name)) as f:
                rec = json.load(f)
            # the folder also holds files the runs made (SlimAdam's derived rules): a record has an id
            if isinstance(rec, dict) and "id" in rec:
                out.append(rec)
    return out


def write_json_atomic(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def fmt_time(s):
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def metric_str(rec):
    v = rec["final"].get(rec["metric"])
    if v is None:
        return f"diverged at step {rec['steps_done']}"
    return f"{rec['metric']} {100 * v:.2f}%" if rec["metric"] == "test_acc" else f"{rec['metric']} {v:.4f}"


# ---------------------------------------------------------------------------
def cmd_run(args):
    exp = args.experiment
    spec = experiments.EXPERIMENTS[exp]
    if git("status", "--porcelain", "--untracked-files=no"):
        print(f"repro: note: the working tree has uncommitted changes; runs use a clean checkout of HEAD ({git('rev-parse', '--short', 'HEAD')})")
    commit = git("rev-parse", "--short=12", "HEAD")
    built = None
    t_start = time.time()
    walls = []  # wall time of the runs finished in this invocation
    # one file per invocation: how long the target took on the clock, over all its sittings
    sitting = {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_start)), "commit": commit,
               "jobs": args.jobs, "runs_trained": 0, "elapsed_s": 0.0}
    sitting_path = os.path.join(RECORDS, exp, "sittings", sitting["started"].replace(":", "") + ".json")
    for phase_i, phase in enumerate(spec["phases"]):
        records = load_records(exp)
        done = {r["id"] for r in records}
        runs, seen = [], set()
        for r in phase(records):
            if r["id"] not in done and r["id"] not in seen:
                seen.add(r["id"])
                runs.append(dict(r, experiment=exp))
        total_phase = len(runs) + sum(1 for r in phase(records) if r["id"] in done)
        print(f"repro {exp}: phase {phase_i + 1}/{len(spec['phases'])} ({phase.__name__}): "
              f"{total_phase - len(runs)} of {total_phase} runs recorded, {len(runs)} to train", flush=True)
        if not runs:
            continue
        if built is None:
            targets = sorted({binary_path(t, o) for t in ("gpt2", "vit") for o in experiments.OPTIMS
                              if any(r["trainer"] == t for r in runs)})
            print(f"repro {exp}: building {len(targets)} trainers at {commit} in out/repro/src/{commit}", flush=True)
            wt = build(commit, [binary_path(r["trainer"], r["optim"]) for r in runs] + targets)
            built = wt
        pending = list(runs)
        active = []  # (proc, run, t0, out_dir, stdout file)
        finished = 0
        while pending or active:
            while pending and len(active) < args.jobs:
                run = pending.pop(0)
                out_dir = os.path.join(OUT, exp, run["id"])
                os.makedirs(os.path.join(ROOT, out_dir), exist_ok=True)
                binary = os.path.join(built, binary_path(run["trainer"], run["optim"]))
                env = dict(os.environ, OMP_NUM_THREADS=str(experiments.THREADS))
                so = open(os.path.join(ROOT, out_dir, "stdout.txt"), "a")
                proc = subprocess.Popen([binary, *run["flags"], "-o", out_dir], cwd=ROOT, env=env,
                                        stdout=so, stderr=subprocess.STDOUT)
                active.append((proc, run, time.time(), out_dir, so))
            time.sleep(0.5)
            for item in list(active):
                proc, run, t0, out_dir, so = item
                if proc.poll() is None:
                    continue
                active.remove(item)
                so.close()
                wall = time.time() - t0
                with open(os.path.join(ROOT, out_dir, "stdout.txt")) as f:
                    lines = [ln.strip() for ln in f if ln.strip()]
                tail = lines[-1] if lines else ""
                if proc.returncode not in (0, 1) or not os.path.exists(os.path.join(ROOT, out_dir, "log.jsonl")):
                    sys.exit(f"repro: {run['id']} failed (exit {proc.returncode}): {tail}\n"
                             f"  see {out_dir}/stdout.txt")
                if proc.returncode == 1 and "NaN" not in tail and "infinite" not in tail:
                    sys.exit(f"repro: {run['id']} stopped with an error: {tail}\n  see {out_dir}/stdout.txt")
                rec = summarise(run, os.path.join(out_dir, "log.jsonl"), wall, proc.returncode, tail, commit,
                                command_of(run, out_dir))
                write_json_atomic(record_path(exp, run["id"]), rec)
                finished += 1
                walls.append(wall)
                sitting["runs_trained"] += 1
                sitting["elapsed_s"] = round(time.time() - t_start, 1)
                write_json_atomic(sitting_path, sitting)
                left = len(pending) + len(active)
                eta = sum(walls) / len(walls) * left / args.jobs
                print(f"[{finished}/{len(runs)}] {exp} {run['id']}: {metric_str(rec)} in {wall:.0f} s | "
                      f"elapsed {fmt_time(time.time() - t_start)} | this phase ETA {fmt_time(eta)}", flush=True)
    print(f"repro {exp}: all runs recorded ({len(load_records(exp))} records in repro/records/{exp}/)")


def cmd_list(args):
    spec = experiments.EXPERIMENTS[args.experiment]
    records = {r["id"]: r for r in load_records(args.experiment)}
    for phase in spec["phases"]:
        for r in phase(list(records.values())):
            rec = records.get(r["id"])
            print(f"{phase.__name__:20s} {r['id']:36s} {metric_str(rec) if rec else '-'}")


def cmd_check(args):
    """Rerun recorded commands at their commits and compare the final metric bit for bit."""
    bad = 0
    for path in args.records:
        with open(path) as f:
            rec = json.load(f)
        wt = build(rec["git_commit"], [binary_path(rec["trainer"], rec["optim"])])
        out_dir = os.path.join(OUT, "check", rec["experiment"], rec["id"])
        if os.path.isdir(os.path.join(ROOT, out_dir)):
            # only ever our own folder: a previous check of this record
            for name in os.listdir(os.path.join(ROOT, out_dir)):
                os.remove(os.path.join(ROOT, out_dir, name))
        os.makedirs(os.path.join(ROOT, out_dir), exist_ok=True)
        flags = shlex.split(rec["command"].split(" && ", 1)[1])[2:]  # drop OMP_NUM_THREADS=.. and the binary
        flags = flags[:flags.index("-o")] + ["-o", out_dir]
        env = dict(os.environ, OMP_NUM_THREADS=str(rec["threads"]))
        t0 = time.time()
        p = subprocess.run([os.path.join(wt, binary_path(rec["trainer"], rec["optim"])), *flags], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        if not os.path.exists(os.path.join(ROOT, out_dir, "log.jsonl")):
            sys.exit(f"repro check: {rec['id']}: the rerun wrote no log (exit {p.returncode}): {tail}")
        again = summarise(dict(rec, artifacts={}, keep_artifact={}),
                          os.path.join(out_dir, "log.jsonl"), time.time() - t0, p.returncode, tail,
                          rec["git_commit"], rec["command"])
        same = again["final"] == rec["final"] and again["eval_curve"] == rec["eval_curve"]
        bad += not same
        print(f"{'same' if same else 'DIFFERENT'}: {rec['experiment']}/{rec['id']}: recorded {rec['final']}, "
              f"rerun {again['final']} ({time.time() - t0:.0f} s)", flush=True)
    sys.exit(1 if bad else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("experiment", choices=sorted(experiments.EXPERIMENTS))
    r.add_argument("-j", "--jobs", type=int, default=2, help="runs at a time (each uses one thread)")
    r.set_defaults(fn=cmd_run)
    lst = sub.add_parser("list")
    lst.add_argument("experiment", choices=sorted(experiments.EXPERIMENTS))
    lst.set_defaults(fn=cmd_list)
    c = sub.add_parser("check")
    c.add_argument("records", nargs="+")
    c.set_defaults(fn=cmd_check)
    args = ap.parse_args()
    os.chdir(ROOT)
    args.fn(args)


if __name__ == "__main__":
    main()
