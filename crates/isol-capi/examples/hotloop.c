/* A polling hot loop that enters isolation, works, exits and prints the report as JSON.
 * Build: cc hotloop.c -I../include ../../../target/debug/libisol.a -lpthread -ldl -lm
 * Run:   ./a.out CPU SECONDS [--allow-ticking] [--sleep]   (as root)                  */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "isol.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CPU SECONDS [--allow-ticking] [--sleep]\n", argv[0]);
        return 64;
    }
    struct isol_config cfg;
    isol_config_init(&cfg);
    cfg.cpu = atoi(argv[1]);
    cfg.pin = 1;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--allow-ticking"))
            cfg.allow_ticking = 1;
        if (!strcmp(argv[i], "--sleep"))
            cfg.wait = ISOL_WAIT_SLEEP;
    }
    int rc = isol_enter(&cfg);
    if (rc != 0) {
        printf("{\"ok\":false,\"rc\":%d,\"error\":\"%s\"}\n", rc, isol_last_error());
        return 1;
    }
    /* The hot loop: poll, count work, watch the interruption counter. */
    double end = now() + atof(argv[2]);
    unsigned long long polls = 0, seen = 0;
    while (now() < end) {
        polls++;
        seen = isol_interruptions();
    }
    struct isol_report r;
    isol_exit(&r);
    printf("{\"ok\":true,\"cpu\":%u,\"ticking\":%d,\"polls\":%llu,\"seen\":%llu,"
           "\"interruptions\":%llu,\"time_to_quiet_ns\":%llu,\"isolated_ns\":%llu}\n",
           r.cpu, r.ticking, polls, seen, (unsigned long long)r.interruptions,
           (unsigned long long)r.time_to_quiet_ns, (unsigned long long)r.isolated_ns);
    return 0;
}
