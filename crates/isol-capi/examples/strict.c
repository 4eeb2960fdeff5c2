/* Strict mode from C: enter isolation on a CPU in strict mode, make one system call, and
 * show what isol recorded. Prints one JSON line.
 *
 *   strict CPU MODE [--allow-ticking]
 *
 * MODE: report (the call runs and is reported), kill (the process dies by SIGKILL after
 * isol prints the violation), signal (SIGUSR1's handler runs first, then the call).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isol.h"

static volatile sig_atomic_t handled = 0;
static volatile long handler_saw = -1;

static void on_usr1(int sig) {
    (void)sig;
    struct isol_violation v;
    /* Safe in a handler: no allocation, no lock. */
    if (isol_last_violation(&v) == 0)
        handler_saw = v.syscall;
    handled = 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: strict CPU report|kill|signal [--allow-ticking]\n");
        return 64;
    }
    struct isol_config cfg;
    isol_config_init(&cfg);
    cfg.cpu = atoi(argv[1]);
    cfg.pin = 1;
    cfg.allow_ticking = argc > 3 && strcmp(argv[3], "--allow-ticking") == 0;
    if (strcmp(argv[2], "kill") == 0) {
        cfg.strict = ISOL_STRICT_KILL;
    } else if (strcmp(argv[2], "signal") == 0) {
        cfg.strict = ISOL_STRICT_SIGNAL;
        cfg.strict_signal = SIGUSR1;
        signal(SIGUSR1, on_usr1);
    } else {
        cfg.strict = ISOL_STRICT_REPORT;
    }
    pid_t expected = getppid();
    int rc = isol_enter(&cfg);
    if (rc != 0) {
        printf("{\"ok\":false,\"rc\":%d}\n", rc);
        return 1;
    }
    /* The violation: one system call while strict. */
    pid_t ppid = getppid();
    struct isol_report r;
    isol_exit(&r);
    struct isol_violation v;
    int has = isol_last_violation(&v);
    printf("{\"ok\":true,\"ppid_right\":%s,\"violations\":%llu,\"has_violation\":%s,"
           "\"syscall\":%lld,\"name\":\"%s\",\"handled\":%d,\"handler_saw\":%ld}\n",
           ppid == expected ? "true" : "false", (unsigned long long)r.violations,
           has == 0 ? "true" : "false", has == 0 ? (long long)v.syscall : -1LL,
           has == 0 ? v.name : "", (int)handled, (long)handler_saw);
    return 0;
}
