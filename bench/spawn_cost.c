/* bench/spawn_cost.c — what one spawn costs the spawning process, by way of spawning
 * (bench/profile.sh compiles and runs it; root, cgroup2 needed for the cgroup variants).
 *
 *   spawn_cost ITERATIONS FDS MIB PROGRAM
 *
 * Before measuring, the process opens FDS close-on-exec fds (pipes) and touches MIB MiB of
 * heap, as ember holds about 2 fds per service and its heap. Then, round robin, each way
 * spawns PROGRAM (which exits at once), each child into a fresh cgroup (made and removed
 * outside the timing), and prints per way the median and p90 of:
 *   parent: the time the spawning thread is blocked, from before the clone to the moment it
 *           knows the exec happened (EOF on a close-on-exec pipe; for vfork-style clones,
 *           the clone's return), as std's Command::spawn is;
 *   child : how long its write of "0" to cgroup.procs took (where it writes one).
 * The child does what ember's does: setsid, 64 rt_sigaction to SIG_DFL, an empty mask.
 *
 *   fork+write       fork; the child writes cgroup.procs (ember today: std's Command with a
 *                    pre_exec closure always forks)
 *   fork             fork; no cgroup (what the write costs, by difference)
 *   vfork+write      clone(CLONE_VM|CLONE_VFORK); the child writes cgroup.procs
 *   clone3-into-cg   clone3(CLONE_VM|CLONE_VFORK|CLONE_INTO_CGROUP): the kernel places the
 *                    child in its cgroup at creation; no write
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

enum { FORK_WRITE, FORK_PLAIN, VFORK_WRITE, CLONE3_CG, WAYS };
static const char *names[WAYS] = {"fork+write", "fork", "vfork+write", "clone3-into-cg"};

struct shared { double write_us; int write_ok; };
static struct shared *sh;
static const char *program;
static int procs_fd = -1;
static int err_pipe[2];

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The child's side, as ember's pre_exec closure. */
static int child(int write_cg) {
    setsid();
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        uint64_t act[4] = {0, 0, 0, 0};
        syscall(SYS_rt_sigaction, sig, act, NULL, 8);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (write_cg && procs_fd >= 0) {
        double t = now_us();
        sh->write_ok = write(procs_fd, "0", 1) == 1;
        sh->write_us = now_us() - t;
    }
    char *argv[] = {(char *)program, NULL};
    execv(program, argv);
    _exit(127);
}

static int child_trampoline(void *arg) { return child((int)(intptr_t)arg); }

#ifdef __x86_64__
/* clone3 with a function to run on a new stack (glibc has no public clone3): the child
 * starts after the syscall instruction on the new stack, so it calls fn from here. */
static long clone3_run(struct clone_args *args, size_t size, int (*fn)(void *), void *arg) {
    long ret;
    __asm__ volatile(
        "mov %[fn], %%r12\n\t"
        "mov %[arg], %%r13\n\t"
        "mov $435, %%eax\n\t"          /* SYS_clone3 */
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "mov %%r13, %%rdi\n\t"
        "call *%%r12\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $60, %%eax\n\t"           /* SYS_exit */
        "syscall\n\t"
        "1:\n\t"
        : "=a"(ret)
        : "D"(args), "S"(size), [fn] "r"(fn), [arg] "r"(arg)
        : "rcx", "r11", "r12", "r13", "memory");
    return ret;
}
#endif

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: spawn_cost ITERATIONS FDS MIB PROGRAM\n");
        return 2;
    }
    int iters = atoi(argv[1]), fds = atoi(argv[2]), mib = atoi(argv[3]);
    program = argv[4];
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < fds / 2; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) { perror("pipe2"); return 1; }
    }
    char *heap = malloc((size_t)mib << 20);
    if (mib) memset(heap, 1, (size_t)mib << 20);

    /* cgroup2: our own cgroup's directory, as ember finds its place. */
    char base[4096] = "";
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[4096], own[4096] = "";
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) { snprintf(own, sizeof own, "%s", line + 3); own[strcspn(own, "\n")] = 0; }
    if (f) fclose(f);
    const char *mounts[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
    for (int m = 0; m < 2 && !base[0]; m++) {
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/cgroup.procs", mounts[m]);
        struct stat st;
        char ctl[4200];
        snprintf(ctl, sizeof ctl, "%s/cgroup.controllers", mounts[m]);
        if (stat(ctl, &st) == 0)
            snprintf(base, sizeof base, "%s%s/spawn-cost-%d", mounts[m], strcmp(own, "/") ? own : "", getpid());
    }
    int have_cg = base[0] && mkdir(base, 0755) == 0;
    if (!have_cg) fprintf(stderr, "spawn_cost: no cgroup2 directory (%s): %s\n", base, strerror(errno));

    double *parent[WAYS], *wr[WAYS];
    int np[WAYS] = {0}, nw[WAYS] = {0};
    for (int w = 0; w < WAYS; w++) {
        parent[w] = calloc(iters, sizeof(double));
        wr[w] = calloc(iters, sizeof(double));
    }
    static char stack[64 * 1024] __attribute__((aligned(16)));
    for (int i = 0; i < iters; i++) {
        for (int w = 0; w < WAYS; w++) {
            if (!have_cg && w != FORK_PLAIN) continue;
            char cg[4300];
            snprintf(cg, sizeof cg, "%s/c%d-%d", base, w, i);
            int cgfd = -1;
            procs_fd = -1;
            if (w != FORK_PLAIN) {
                if (mkdir(cg, 0755) != 0) continue;
                char pf[4400];
                snprintf(pf, sizeof pf, "%s/cgroup.procs", cg);
                procs_fd = open(pf, O_WRONLY | O_CLOEXEC);
                cgfd = open(cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            }
            sh->write_us = -1;
            sh->write_ok = 0;
            pid_t pid = -1;
            double t0 = now_us(), blocked = -1;
            if (w == FORK_WRITE || w == FORK_PLAIN) {
                if (pipe2(err_pipe, O_CLOEXEC) != 0) return 1;
                pid = fork();
                if (pid == 0) { close(err_pipe[0]); child(w == FORK_WRITE); }
                close(err_pipe[1]);
                char b;
                while (read(err_pipe[0], &b, 1) > 0) {}
                blocked = now_us() - t0;
                close(err_pipe[0]);
            } else if (w == VFORK_WRITE) {
                pid = clone(child_trampoline, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD,
                            (void *)(intptr_t)1);
                blocked = now_us() - t0;
            } else {
#ifdef __x86_64__
                struct clone_args args;
                memset(&args, 0, sizeof args);
                args.flags = CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP;
                args.exit_signal = SIGCHLD;
                args.cgroup = (uint64_t)cgfd;
                args.stack = (uint64_t)(uintptr_t)stack;
                args.stack_size = sizeof stack;
                pid = clone3_run(&args, sizeof args, child_trampoline, (void *)(intptr_t)0);
                blocked = now_us() - t0;
#endif
            }
            if (pid > 0) {
                waitpid(pid, NULL, 0);
                parent[w][np[w]++] = blocked;
                if (sh->write_us >= 0 && sh->write_ok) wr[w][nw[w]++] = sh->write_us;
            }
            if (procs_fd >= 0) close(procs_fd);
            if (cgfd >= 0) close(cgfd);
            if (w != FORK_PLAIN) rmdir(cg);
        }
    }
    if (have_cg) rmdir(base);
    printf("| way | spawns | parent blocked, median / p90 (µs) | child's cgroup.procs write, median / p90 (µs) |\n");
    printf("|---|---:|---:|---:|\n");
    for (int w = 0; w < WAYS; w++) {
        if (!np[w]) { printf("| %s | 0 | n/a | n/a |\n", names[w]); continue; }
        qsort(parent[w], np[w], sizeof(double), cmp);
        qsort(wr[w], nw[w], sizeof(double), cmp);
        printf("| %s | %d | %.0f / %.0f |", names[w], np[w], parent[w][np[w] / 2], parent[w][np[w] * 9 / 10]);
        if (nw[w]) printf(" %.0f / %.0f |\n", wr[w][nw[w] / 2], wr[w][nw[w] * 9 / 10]);
        else printf(" — |\n");
    }
    return 0;
}
