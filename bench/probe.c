/* bench/probe.c — the service process of bench/measure.py, compiled at run time (cc -O2).
 *
 * Every mode appends fixed-width records (RECORD_LEN bytes) to FILE with O_APPEND (one
 * write(2) each, atomic for a regular file), so the benchmark counts them by the file's
 * size and reads their CLOCK_MONOTONIC times, the clock of Python's time.monotonic():
 *
 *   "K IIIIII SSSSSSSSSS.NNNNNNNNN\n"   K = kind, I = service index, S.N = time
 *
 *   probe up FILE IDX       record 'u', then wait forever (sleep infinity, signals at their
 *                           defaults: SIGTERM ends it)
 *   probe term FILE IDX     record 'u', then wait; on SIGTERM record 't' and exit 0
 *   probe crash FILE IDX    record 'c' and exit 1 (a crash loop: one record per start)
 *   probe ready FILE N      record 'u' and wait 300 ms (the benchmark notes PID 1's
 *                           children meanwhile), then fork an intermediate that forks N children which exit at once;
 *                           once all have exited (EOF on a pipe each held) it records 'z'
 *                           and exits: its N zombies are reparented to PID 1 together.
 *                           The probe reaps the intermediate, then waits forever.
 *   probe orphan FILE N     record 'u', wait 300 ms; fork an intermediate that forks N
 *                           children blocked on a pipe and exits: PID 1 inherits N live
 *                           orphans. The probe reaps the intermediate, records 'r' and
 *                           closes the pipe: every orphan exits, and PID 1 reaps them as
 *                           they end. Then it waits forever.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RECORD_LEN 30

static int out = -1;
static int idx;

static void record(char kind) {
    struct timespec ts;
    char buf[64];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int n = snprintf(buf, sizeof buf, "%c %06d %010lld.%09ld\n", kind, idx % 1000000,
                     (long long)ts.tv_sec, ts.tv_nsec);
    if (n == RECORD_LEN && out >= 0) (void)!write(out, buf, n);
}

static void on_term(int sig) {
    (void)sig;
    record('t');
    _exit(0);
}

/* ready and orphan: record 'u', then give the benchmark 300 ms to note PID 1's children
 * before any zombie exists. */
static void settle(void) {
    struct timespec d = {0, 300 * 1000 * 1000};
    record('u');
    nanosleep(&d, NULL);
}

static void forever(void) {
    for (;;) pause();
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: probe up|term|crash FILE IDX | probe ready|orphan FILE N\n");
        return 2;
    }
    const char *mode = argv[1];
    long n = atol(argv[3]);
    idx = (int)n;
    out = open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0) return 3;
    if (!strcmp(mode, "up")) {
        record('u');
        forever();
    } else if (!strcmp(mode, "term")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
        record('u');
        forever();
    } else if (!strcmp(mode, "crash")) {
        record('c');
        return 1;
    } else if (!strcmp(mode, "ready")) {
        idx = 0;
        settle();
        pid_t mid = fork();
        if (mid == 0) {
            int p[2];
            if (pipe(p) != 0) _exit(4);
            for (long i = 0; i < n; i++) {
                pid_t c = fork();
                if (c == 0) _exit(0); /* holds p[1] until it exits */
                if (c < 0) break;
            }
            close(p[1]);
            char b;
            while (read(p[0], &b, 1) > 0) {}
            record('z');
            _exit(0);
        }
        if (mid > 0) waitpid(mid, NULL, 0);
        forever();
    } else if (!strcmp(mode, "orphan")) {
        idx = 0;
        settle();
        int p[2];
        if (pipe(p) != 0) return 4;
        pid_t mid = fork();
        if (mid == 0) {
            close(p[1]);
            for (long i = 0; i < n; i++) {
                pid_t c = fork();
                if (c == 0) { /* an orphan once the intermediate exits; ends at EOF */
                    char b;
                    while (read(p[0], &b, 1) > 0) {}
                    _exit(0);
                }
                if (c < 0) break;
            }
            _exit(0);
        }
        close(p[0]);
        if (mid > 0) waitpid(mid, NULL, 0);
        record('r');
        close(p[1]); /* every orphan sees EOF and exits: PID 1 reaps them as they end */
        forever();
    }
    fprintf(stderr, "probe: unknown mode %s\n", mode);
    return 2;
}
