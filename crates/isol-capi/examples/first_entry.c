/* The first isolation of a program, as a user writes it: the main thread stays on CPU 0
 * and creates a worker (SCHED_OTHER, starting on CPU 0) that enters isolation on CPU with
 * isol_enter(cpu, pin = 1, fifo_priority), then spins. The main thread counts every
 * interrupt CPU takes (all rows of /proc/interrupts) during the SECONDS after isol_enter
 * returned, stops the worker and prints one JSON line.
 * Build: cc -O2 first_entry.c -I../include libisol.a -lpthread -ldl -lm
 * Run:   ./a.out CPU SECONDS [--sleep] [--fifo PRIO]   (as root)                         */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "isol.h"

static struct isol_config cfg;
static atomic_int entered; /* 1: isolated, -1: enter failed */
static atomic_int stop;
static int rc;
static char error[512];
static struct isol_report report;

static void *worker(void *arg)
{
    (void)arg;
    rc = isol_enter(&cfg);
    if (rc != 0) {
        snprintf(error, sizeof error, "%s", isol_last_error());
        for (char *c = error; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 32)
                *c = '\'';
        atomic_store(&entered, -1);
        return NULL;
    }
    atomic_store(&entered, 1);
    unsigned long long seen = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed))
        seen += isol_interruptions();
    (void)seen;
    isol_exit(&report);
    return NULL;
}

/* Sum of every row's count in CPU's column of /proc/interrupts; the rows that are not
 * zero in `delta` mode are printed by the caller from two snapshots. */
#define MAX_ROWS 256
struct row {
    char name[32];
    unsigned long long count;
};

static int snapshot(int cpu, struct row *rows)
{
    FILE *f = fopen("/proc/interrupts", "r");
    if (!f)
        return 0;
    char line[4096];
    int ncpus = 0, col = -1, n = 0;
    if (fgets(line, sizeof line, f)) {
        for (char *t = strtok(line, " \t\n"); t; t = strtok(NULL, " \t\n")) {
            if (!strncmp(t, "CPU", 3) && atoi(t + 3) == cpu)
                col = ncpus;
            ncpus++;
        }
    }
    while (col >= 0 && n < MAX_ROWS && fgets(line, sizeof line, f)) {
        char *save = NULL;
        char *name = strtok_r(line, " \t\n", &save);
        if (!name)
            continue;
        unsigned long long v = 0;
        int i = 0;
        for (char *t = strtok_r(NULL, " \t\n", &save); t && i < ncpus; t = strtok_r(NULL, " \t\n", &save), i++) {
            char *end;
            unsigned long long x = strtoull(t, &end, 10);
            if (*end)
                break;
            if (i == col)
                v = x;
        }
        snprintf(rows[n].name, sizeof rows[n].name, "%s", name);
        rows[n].count = v;
        n++;
    }
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CPU SECONDS [--sleep] [--fifo PRIO]\n", argv[0]);
        return 64;
    }
    int cpu = atoi(argv[1]);
    double secs = atof(argv[2]);
    cpu_set_t zero;
    CPU_ZERO(&zero);
    CPU_SET(0, &zero);
    sched_setaffinity(0, sizeof zero, &zero);
    isol_config_init(&cfg);
    cfg.cpu = cpu;
    cfg.pin = 1;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--sleep"))
            cfg.wait = ISOL_WAIT_SLEEP;
        if (!strcmp(argv[i], "--fifo") && i + 1 < argc)
            cfg.fifo_priority = atoi(argv[++i]);
    }
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    while (atomic_load(&entered) == 0)
        usleep(1000);
    static struct row before[MAX_ROWS], after[MAX_ROWS];
    int nb = snapshot(cpu, before);
    struct timespec d = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
    if (atomic_load(&entered) == 1)
        nanosleep(&d, NULL);
    int na = snapshot(cpu, after);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    unsigned long long irqs = 0;
    printf("{\"ok\":%s,\"rc\":%d,\"error\":\"%s\",\"rows\":{", rc == 0 ? "true" : "false", rc,
           rc == 0 ? "" : error);
    int first = 1;
    for (int i = 0; i < na && i < nb; i++) {
        unsigned long long dlt = after[i].count - before[i].count;
        if (dlt) {
            printf("%s\"%s\":%llu", first ? "" : ",", after[i].name, dlt);
            first = 0;
            irqs += dlt;
        }
    }
    printf("},\"irqs\":%llu,\"interruptions\":%llu,\"time_to_quiet_ns\":%llu}\n", irqs,
           (unsigned long long)report.interruptions,
           (unsigned long long)report.time_to_quiet_ns);
    return 0;
}
