// test_memplan: the memory plan's parts that need no trainer (run/memplan.h).
// 1. The memory available, from made-up /proc/meminfo, /proc/self/cgroup and
//    cgroup v1/v2 hierarchies: MemAvailable alone, a v1 limit at our level and
//    a tighter one above it, v1's "no limit", v2's "max" and a v2 limit, a
//    controller list, no meminfo at all.
// 2. The refusal line of memplan_check with a made-up model whose plan grows
//    with B and T: the -b and -t it proposes are the largest that fit, the
//    optimizers it lists are those whose plans fit, a run that fits passes,
//    and --force-memory only warns.
// The trainers' own plans against their peak resident set: dev/test_memory.sh.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/utils.h"
#include "run/memplan.h"

#include "test.h"

static char root[64];

static void put(const char *rel, const char *text) {
    char path[512], dir[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    // every folder on the way
    for (char *p = strchr(path + strlen(root) + 1, '/'); p; p = strchr(p + 1, '/')) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(p - path), path);
        mkdir(dir, 0755);
    }
    FILE *f = fopen(path, "w");
    if (!f) fail("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

// the bytes available, or SIZE_MAX when unknown
static size_t avail(const char *meminfo, const char *cgroups, char *source) {
    char m[512], c[512], v1[512], v2[512];
    snprintf(m, sizeof(m), "%s/%s", root, meminfo);
    snprintf(c, sizeof(c), "%s/%s", root, cgroups);
    snprintf(v1, sizeof(v1), "%s/v1", root);
    snprintf(v2, sizeof(v2), "%s/v2", root);
    size_t bytes;
    return memory_available_from(&bytes, m, c, v1, v2, source, 600) ? bytes : SIZE_MAX;
}

static void available(void) {
    printf("-- the memory available\n");
    const size_t G = 1024ULL * 1024 * 1024, M = 1024 * 1024;
    char src[600];
    put("meminfo", "MemTotal:       24684092 kB\nMemFree:  100 kB\nMemAvailable:    8388608 kB\nBuffers: 1 kB\n");
    put("none", "0::/\n");
    CHECK(avail("meminfo", "none", src) == 8 * G && strcmp(src, "MemAvailable") == 0, "MemAvailable alone: %s", src);
    CHECK(avail("nomeminfo", "none", src) == SIZE_MAX && strcmp(src, "unknown") == 0, "no meminfo, no cgroup: unknown");

    // v1: our cgroup /a/b leaves 1.5 GiB, its parent /a only 0.5 GiB; the root has no limit
    put("v1/memory.limit_in_bytes", "9223372036854771712\n");
    put("v1/memory.usage_in_bytes", "5000000000\n");
    put("v1/a/memory.limit_in_bytes", "1610612736\n");  // 1.5 GiB
    put("v1/a/memory.usage_in_bytes", "1073741824\n");  // 1 GiB
    put("v1/a/b/memory.limit_in_bytes", "2147483648\n"); // 2 GiB
    put("v1/a/b/memory.usage_in_bytes", "536870912\n");  // 0.5 GiB
    put("v1list", "12:pids:/x\n4:cpu,memory,blkio:/a/b\n1:name=systemd:/\n0::/\n");
    CHECK(avail("meminfo", "v1list", src) == G / 2 && strstr(src, "/v1/a/memory.limit_in_bytes"),
          "v1: the tighter limit of the parent: %s", src);
    put("v1/c/memory.limit_in_bytes", "9223372036854771712\n");
    put("v1/c/memory.usage_in_bytes", "100\n");
    put("v1nolimit", "4:memory:/c\n");
    CHECK(avail("meminfo", "v1nolimit", src) == 8 * G && strcmp(src, "MemAvailable") == 0, "v1 without a limit: MemAvailable");
    put("v1/d/memory.limit_in_bytes", "1073741824\n");
    put("v1/d/memory.usage_in_bytes", "2147483648\n");
    put("v1over", "4:memory:/d\n");
    CHECK(avail("meminfo", "v1over", src) == 0 && strstr(src, "/v1/d/"), "v1 usage above the limit: 0 left, known");

    // v2: "max" is no limit; a limit above it counts
    put("v2/s/memory.max", "1073741824\n");
    put("v2/s/memory.current", "268435456\n");
    put("v2/s/t/memory.max", "max\n");
    put("v2/s/t/memory.current", "1000\n");
    put("v2list", "0::/s/t\n");
    CHECK(avail("meminfo", "v2list", src) == 768 * M && strstr(src, "/v2/s/memory.max"), "v2: the parent's memory.max: %s", src);
    CHECK(avail("nomeminfo", "v2list", src) == 768 * M, "v2 without meminfo: the cgroup alone");
}

// a made-up model: 1 GiB of weights and state, 1 MiB per B x T token for the
// activations; the optimizers' plans differ by their state, and fused
// updates save 1000 MiB of gradients
static void toy_plan(MemPlan *p, const void *ctx, int B, int T, const char *optim, int fused) {
    (void)ctx;
    const size_t M = 1024 * 1024;
    memplan_begin(p, B, T, optim, fused, 10 * M, "test");
    size_t state = strcmp(optim, "adamw") == 0 ? 2048 : strcmp(optim, "sinkgd") == 0 ? 100 : 1024;
    memplan_add(p, "state", state * M, "%s", optim);
    memplan_add(p, "gradients", fused ? 0 : 1000 * M, "%s", fused ? "fused" : "whole");
    memplan_add(p, "activations", (size_t)B * T * M, "B %d x T %d", B, T);
}

// memplan_check in a child: its status and the one line it writes on stderr
static int check_in_child(int B, int T, const char *optim, int fused, size_t limit, int force, char *err, size_t len) {
    int fds[2];
    if (pipe(fds) != 0) fail("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        if (!freopen("/dev/null", "w", stdout)) _exit(3);
        MemPlan p;
        toy_plan(&p, NULL, B, T, optim, fused);
        memplan_check(&p, toy_plan, NULL, limit, force);
        fflush(stderr);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < len && (got = read(fds[0], err + n, len - 1 - n)) > 0) n += (size_t)got;
    err[n] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void refusal(void) {
    printf("-- what would fit\n");
    const size_t M = 1024 * 1024;
    char err[2048];
    // fused sgdm at B 8 x T 64: 10 + 1024 + 512 MiB = 1546 MiB; in 1200 MiB -b 2 (1162) fits and -b 3 (1226) not;
    // -t 20 (1194) fits and -t 21 (1202) not; sinkgd (622 MiB) fits, adamw (2570) not
    int s = check_in_child(8, 64, "sgdm", 1, 1200 * M, 0, err, sizeof(err));
    CHECK(s == 1 && strncmp(err, "error: this run needs 1.51 GiB of memory", 40) == 0 && strchr(err, '\n') == err + strlen(err) - 1,
          "refused with one line: %.*s", (int)strcspn(err, "\n"), err);
    CHECK(strstr(err, "what would fit: -b 2 (1.13 GiB), -t 20 (1.17 GiB), OPTIM=sinkgd (622.00 MiB); ") != NULL,
          "the largest -b and -t that fit, and the one optimizer that does");
    CHECK(strstr(err, "OPTIM=adamw") == NULL && strstr(err, "OPTIM=slimadam") == NULL && strstr(err, "--fused-update 1 (") == NULL,
          "no optimizer that does not fit, no fused mode when the run is fused");
    s = check_in_child(1, 2, "adamw", 1, 1200 * M, 0, err, sizeof(err));
    CHECK(s == 1 && strstr(err, "what would fit: OPTIM=sgdm") && strstr(err, "(no smaller -b or -t fits with adamw)"),
          "B 1 x T 2: only other optimizers, and a word that -b and -t do not help");
    s = check_in_child(1, 1, "sgdm", 1, 100 * M, 0, err, sizeof(err));
    CHECK(s == 1 && strstr(err, "no smaller -b or -t and no other optimizer fits"), "nothing fits: said so");
    s = check_in_child(2, 64, "sgdm", 1, 1200 * M, 0, err, sizeof(err));
    CHECK(s == 0 && err[0] == '\0', "a run that fits passes silently");
    s = check_in_child(8, 64, "sgdm", 1, 1200 * M, 1, err, sizeof(err));
    CHECK(s == 0 && strncmp(err, "warning: this run needs 1.51 GiB", 32) == 0, "--force-memory 1: a warning, and on");
    // unfused adamw at B 1 x T 2 needs 10 + 2048 + 1000 + 2 MiB; fused, 2060 MiB fits in 2100 MiB, sgdm's 2036 too
    s = check_in_child(1, 2, "adamw", 0, 2100 * M, 0, err, sizeof(err));
    CHECK(s == 1 && strstr(err, "OPTIM=sgdm (1.99 GiB), ") && strstr(err, ", --fused-update 1 (2.01 GiB)"),
          "an unfused run that fits with --fused-update 1 says so: %.*s", (int)strcspn(err, "\n"), err);
}

int main(void) {
    snprintf(root, sizeof(root), "/tmp/test_memplan.XXXXXX");
    if (!mkdtemp(root)) fail("mkdtemp");
    available();
    refusal();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0) fail("cannot remove %s", root);
    if (failures) { printf("test_memplan: %d FAILED\n", failures); return 1; }
    printf("test_memplan: all passed\n");
    return 0;
}
