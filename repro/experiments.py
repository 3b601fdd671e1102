"""The paper-reproduction experiments: which runs each make target trains.

An experiment is a list of phases. A phase is a function that receives the
records finished so far and returns the runs it wants (a later phase can
depend on an earlier one: the seeds run at the best cell of the grid). A run
is a dict:
    id        unique within the experiment, also its folder name
    trainer   "gpt2" or "vit"
    optim     adamw | sgdm | sgd_sai | sinkgd | slimadam
    flags     the trainer's flags, without -o (the driver adds it)
    hp        the hyperparameters that vary (lr, wd, seed), for tables and plots
    metric    "val_loss" (lower is better) or "test_acc" (higher is better)
The protocol of each experiment is written out in repro/README.md.
"""

OPTIMS = ["adamw", "sgdm", "sgd_sai", "sinkgd", "slimadam"]
OPTIM_LABEL = {"adamw": "AdamW", "sgdm": "SGDM", "sgd_sai": "SGD-SaI", "sinkgd": "SinkGD", "slimadam": "SlimAdam"}

# Every run uses one thread and the driver runs two at a time: on this 2-core
# machine that trains ~10% more runs per hour than one 2-thread run at a time.
# A run is deterministic for its thread count, so the record's command (with
# OMP_NUM_THREADS=1) reproduces its metric exactly.
THREADS = 1
SEEDS = [1, 2, 3]  # the grid runs with the first, the best cell gets all three


def fmt(x):
    """1e-3 -> '1e-3', 0.3 -> '3e-1': short, sortable-enough run ids."""
    m, e = f"{x:.0e}".split("e")
    return f"{m}e{int(e)}"


def best_by(records, optim, metric, higher):
    """The grid record of `optim` with the best final metric (diverged runs last)."""
    grid = [r for r in records if r["optim"] == optim and r["phase"] == "grid"]
    if not grid:
        return None
    def key(r):
        v = r["final"].get(metric)
        if v is None or v != v:
            return float("inf")
        return -v if higher else v
    return min(grid, key=key)


def cell(trainer, optim, metric, base, lr, wd, seed, name=None):
    """One run of a sweep: the base flags plus lr, weight decay and seed (last)."""
    name = name or f"{optim}_lr{fmt(lr)}"
    return {"id": f"{name}_s{seed}", "trainer": trainer, "optim": optim, "phase": "grid", "metric": metric,
            "hp": {"lr": lr, "wd": wd, "seed": seed},
            "flags": base + ["-l", f"{lr:g}", "-c", f"{wd:g}", "--seed", str(seed)]}


def reseed(run, seed):
    """The same run with another seed: the seed phase of a sweep."""
    return dict(run, phase="seed", hp=dict(run["hp"], seed=seed), flags=run["flags"][:-2] + ["--seed", str(seed)],
                id=run["id"].rsplit("_s", 1)[0] + f"_s{seed}")


def seeds_at_best(records, grid_runs, metric, higher):
    """Phase 2 of a sweep: SEEDS[1:] at each optimizer's best grid cell."""
    runs = []
    for optim in OPTIMS:
        best = best_by(records, optim, metric, higher)
        if best is not None:
            runs += [reseed(next(r for r in grid_runs if r["id"] == best["id"]), s) for s in SEEDS[1:]]
    return runs


# ---------------------------------------------------------------------------
# repro-vit: the SGD-SaI paper's ViT grid (its Table/Figure of lr x wd for every
# optimizer) on Fashion-MNIST with the default small ViT.
VIT_LRS = [1e-3, 1e-2, 1e-1]
VIT_WDS = [1e-4, 1e-3, 1e-2]
VIT_EPOCHS = 3
VIT_STEPS_PER_EPOCH = 468  # 60000 images / batch 128, the last partial batch dropped
VIT_BASE = ["-e", "fmnist-tiny", "-b", "128", "--epochs", str(VIT_EPOCHS), "-k", "cosine", "-u", "100",
            "-q", "0", "--clip", "1", "-v", str(VIT_STEPS_PER_EPOCH), "-p", "0",
            "-n", str(VIT_STEPS_PER_EPOCH), "-nk", "1", "-y", "1"]


def vit_grid(records):
    return [cell("vit", o, "test_acc", VIT_BASE, lr, wd, SEEDS[0], name=f"{o}_lr{fmt(lr)}_wd{fmt(wd)}")
            for o in OPTIMS for lr in VIT_LRS for wd in VIT_WDS]


def vit_seeds(records):
    return seeds_at_best(records, vit_grid(records), "test_acc", higher=True)


# ---------------------------------------------------------------------------
# repro-gpt2: final validation loss against the learning rate (the SlimAdam
# paper's kind of figure), every optimizer on the same data order and the same
# initialisation, a fixed token budget. The data is read in order (--shuffle 0):
# the records were made before the trainer shuffled by default, and a grid
# must not mix two data orders. Six half-decade learning rates per
# optimizer, placed around its useful range (from the make-train sweeps) so that
# each row spans from too small to diverging.
GPT2_STEPS = 150
GPT2_B, GPT2_T = 8, 128
GPT2_LRS = {
    "adamw": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "slimadam": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "sgdm": [1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0],
    "sgd_sai": [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    "sinkgd": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1],
}
# weight decay: nanoGPT's 0.1 for the AdamW family and SGD-SaI (decoupled);
# SGDM's decay is coupled L2 and SinkGD's papers use none.
GPT2_WD = {"adamw": 0.1, "slimadam": 0.1, "sgd_sai": 0.1, "sgdm": 0.0, "sinkgd": 0.0}
GPT2_BASE = ["-e", "d4", "-b", str(GPT2_B), "-t", str(GPT2_T), "-x", str(GPT2_STEPS), "-k", "cosine",
             "-u", "15", "-q", "0.1", "--clip", "1", "-v", "15", "-m", "10", "-s", "-1", "-p", "0",
             "-n", "50", "-nk", "1", "-y", "1", "--shuffle", "0"]


def gpt2_grid(records):
    return [cell("gpt2", o, "val_loss", GPT2_BASE, lr, GPT2_WD[o], SEEDS[0]) for o in OPTIMS for lr in GPT2_LRS[o]]


def gpt2_seeds(records):
    return seeds_at_best(records, gpt2_grid(records), "val_loss", higher=False)


def gpt2_slimadam_pair(records):
    """The SlimAdam paper compares at a small and a large lr (3e-4, 3e-3): three
    seeds of AdamW and SlimAdam at both, whichever is best."""
    return [reseed(r, s) for r in gpt2_grid(records)
            if r["optim"] in ("adamw", "slimadam") and r["hp"]["lr"] in (3e-4, 3e-3) for s in SEEDS[1:]]


EXPERIMENTS = {
    "vit": {"phases": [vit_grid, vit_seeds], "metric": "test_acc"},
    "gpt2": {"phases": [gpt2_grid, gpt2_seeds, gpt2_slimadam_pair], "metric": "val_loss"},
}


# ---------------------------------------------------------------------------
# repro-slimadam: the SNR analysis behind SlimAdam. AdamW on the repro-gpt2
# config measures, every 10 steps, the SNR of each block's second moment along
# each candidate dimension (--snr-every, written to snr.jsonl), at the SlimAdam
# paper's two learning rates; the rules derived from each run (its
# slimadam_rules.json, copied next to the records) then train SlimAdam at the
# same lr, three seeds, against AdamW's seeds from repro-gpt2.
SNR_EVERY = 10
SLIM_LRS = [3e-4, 3e-3]


def rules_path(lr):
    return f"repro/records/slimadam/rules_lr{fmt(lr)}.json"


def slimadam_snr(records):
    runs = []
    for lr in SLIM_LRS:
        runs.append({
            "id": f"adamw_snr_lr{fmt(lr)}_s{SEEDS[0]}", "trainer": "gpt2", "optim": "adamw", "phase": "snr",
            "metric": "val_loss", "hp": {"lr": lr, "wd": GPT2_WD["adamw"], "seed": SEEDS[0]},
            "flags": GPT2_BASE + ["-l", f"{lr:g}", "-c", f"{GPT2_WD['adamw']:g}", "--snr-every", str(SNR_EVERY),
                                  "--seed", str(SEEDS[0])],
            "artifacts": {"snr": "snr.jsonl", "rules": "slimadam_rules.json"},
            "keep_artifact": {"rules": rules_path(lr)},
        })
    return runs


def slimadam_derived(records):
    runs = []
    for lr in SLIM_LRS:
        if not any(r["id"] == f"adamw_snr_lr{fmt(lr)}_s{SEEDS[0]}" for r in records):
            continue
        for seed in SEEDS:
            runs.append({
                "id": f"slimadam_derived_lr{fmt(lr)}_s{seed}", "trainer": "gpt2", "optim": "slimadam",
                "phase": "derived", "metric": "val_loss",
                "hp": {"lr": lr, "wd": GPT2_WD["slimadam"], "seed": seed, "rules": rules_path(lr)},
                "flags": GPT2_BASE + ["-l", f"{lr:g}", "-c", f"{GPT2_WD['slimadam']:g}",
                                      "--slimadam-rules", rules_path(lr), "--seed", str(seed)],
            })
    return runs


# ---------------------------------------------------------------------------
# repro-sgd-sai: the g-SNR behind SGD-SaI. SGD-SaI trains GPT-2 at make train's
# lr and the ViT at its best cell of repro-vit, and
# measures, without using them, the g-SNR every block would get if it were
# recomputed every few steps (--gsnr-every, written to gsnr.jsonl); GPT-2 124M
# (d12) adds the table at initialisation for the real model size.
def sgd_sai_gsnr(records_unused):
    import repro  # the records of the other experiments
    vit_best = best_by(repro.load_records("vit"), "sgd_sai", "test_acc", higher=True)
    lr_g = 1e-3  # make train's SGD-SaI lr (g-SNR at initialisation does not depend on it)
    lr_v, wd_v = (vit_best["hp"]["lr"], vit_best["hp"]["wd"]) if vit_best else (1e-2, 1e-3)
    return [
        {"id": f"gpt2_d4_lr{fmt(lr_g)}_s{SEEDS[0]}", "trainer": "gpt2", "optim": "sgd_sai", "phase": "gsnr",
         "metric": "val_loss", "hp": {"lr": lr_g, "wd": GPT2_WD["sgd_sai"], "seed": SEEDS[0]},
         "flags": GPT2_BASE + ["-l", f"{lr_g:g}", "-c", f"{GPT2_WD['sgd_sai']:g}", "--gsnr-every", "10",
                               "--seed", str(SEEDS[0])],
         "artifacts": {"gsnr": "gsnr.jsonl"}},
        {"id": f"vit_lr{fmt(lr_v)}_wd{fmt(wd_v)}_s{SEEDS[0]}", "trainer": "vit", "optim": "sgd_sai", "phase": "gsnr",
         "metric": "test_acc", "hp": {"lr": lr_v, "wd": wd_v, "seed": SEEDS[0]},
         "flags": VIT_BASE + ["-l", f"{lr_v:g}", "-c", f"{wd_v:g}", "--gsnr-every", "47", "--seed", str(SEEDS[0])],
         "artifacts": {"gsnr": "gsnr.jsonl"}},
        # GPT-2 124M: the table at initialisation and over the first 20 steps
        {"id": f"gpt2_d12_lr{fmt(lr_g)}_s{SEEDS[0]}", "trainer": "gpt2", "optim": "sgd_sai", "phase": "gsnr",
         "metric": "val_loss", "hp": {"lr": lr_g, "wd": GPT2_WD["sgd_sai"], "seed": SEEDS[0]},
         "flags": ["-e", "d12", "-b", "4", "-t", "64", "-x", "20", "-k", "cosine", "-u", "2", "-q", "0.1",
                   "--clip", "1", "-v", "0", "-m", "10", "-s", "-1", "-p", "0", "-n", "20", "-nk", "1", "-y", "1",
                   "--shuffle", "0", "-l", f"{lr_g:g}", "-c", f"{GPT2_WD['sgd_sai']:g}", "--gsnr-every", "5", "--seed", str(SEEDS[0])],
         "artifacts": {"gsnr": "gsnr.jsonl"}},
    ]


EXPERIMENTS["slimadam"] = {"phases": [slimadam_snr, slimadam_derived], "metric": "val_loss"}
EXPERIMENTS["sgd_sai"] = {"phases": [sgd_sai_gsnr], "metric": "val_loss"}


# ---------------------------------------------------------------------------
# smoke: two short ViT runs, for the driver's own test (dev/test_repro.sh)
def smoke(records):
    return [{"id": f"{o}_smoke", "trainer": "vit", "optim": o, "phase": "grid", "metric": "test_acc",
             "hp": {"lr": 1e-3, "wd": 1e-4, "seed": SEEDS[0]},
             "flags": ["-e", "fmnist-tiny", "-b", "64", "-x", "30", "-u", "5", "-v", "15", "-p", "0", "-n", "20",
                       "-nk", "1", "-y", "1", "-l", "1e-3", "-c", "1e-4", "--seed", str(SEEDS[0])]}
            for o in ("adamw", "sgd_sai")]


EXPERIMENTS["smoke"] = {"phases": [smoke], "metric": "test_acc"}
