/*
 * ae-difffuzz: differential fuzzing of the backends.
 *
 *   ae-difffuzz [--seeds N] [--seed-start S] [--seed S] [--both-directions] [--verbose] BACKEND...
 *
 * For each seed, a program (program.h) is generated from a PRNG and run on a
 * loop of each BACKEND in turn, in this process; each run gives a trace of
 * what the API observably did (interp.c). The traces must be equal: on a
 * difference it prints the seed, the program and, for each backend that
 * differs from the first, the first differing line, and exits 1.
 *
 * The first seed is --seed-start, else the environment variable
 * AE_DIFFFUZZ_SEED_START, else 1. --seed S runs just S (with --verbose the
 * program and the full traces are printed). --both-directions lets io watchers on sockets ask
 * for reading and writing at once. --corpus DIR writes each seed's program
 * bytes into DIR/seed-S (a starting corpus for the libFuzzer harness) and
 * runs nothing. Exit status: 0 all equal, 1 a difference, 2 a usage or setup
 * error.
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "difference.h"
#include "interp.h"
#include "program.h"

static int usage(void)
{
    fputs("usage: ae-difffuzz [--seeds N] [--seed-start S] [--seed S] [--both-directions] [--verbose] BACKEND...\n       ae-difffuzz --corpus DIR [--seeds N] [--seed-start S]\n", stderr);
    return 2;
}

static int parse_u64(const char *text, uint64_t *value)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno || end == text || *end) {
        fprintf(stderr, "ae-difffuzz: not a number: '%s'\n", text);
        return -1;
    }
    *value = v;
    return 0;
}

/* The program bytes of each seed, one file each. */
static int write_corpus(const char *dir, uint64_t start, uint64_t seeds)
{
    uint8_t bytes[512];
    for (uint64_t seed = start; seed - start < seeds; seed++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/seed-%" PRIu64, dir, seed);
        size_t size = fz_program_size(seed);
        fz_program_bytes(seed, bytes, size);
        FILE *f = fopen(path, "wb");
        bool written = f && fwrite(bytes, 1, size, f) == size;
        if (f && fclose(f) != 0)
            written = false;
        if (!written) {
            fprintf(stderr, "ae-difffuzz: cannot write %s: %s\n", path, strerror(errno));
            return 2;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t seeds = 100, start = 1;
    bool verbose = false, both_directions = false;
    const char *corpus = NULL;
    const char *env = getenv("AE_DIFFFUZZ_SEED_START");
    if (env && *env && parse_u64(env, &start) < 0)
        return 2;
    int first_backend = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds") && i + 1 < argc) {
            if (parse_u64(argv[++i], &seeds) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--seed-start") && i + 1 < argc) {
            if (parse_u64(argv[++i], &start) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            if (parse_u64(argv[++i], &start) < 0)
                return 2;
            seeds = 1;
        } else if (!strcmp(argv[i], "--both-directions")) {
            both_directions = true;
        } else if (!strcmp(argv[i], "--corpus") && i + 1 < argc) {
            corpus = argv[++i];
        } else if (!strcmp(argv[i], "--verbose")) {
            verbose = true;
        } else if (argv[i][0] == '-') {
            return usage();
        } else {
            first_backend = i;
            break;
        }
    }
    if (corpus)
        return write_corpus(corpus, start, seeds);
    int nbackends = argc - first_backend;
    if (nbackends < 2) {
        fputs("ae-difffuzz: name at least two backends to compare\n", stderr);
        return usage();
    }
    const char *const *backends = (const char *const *)argv + first_backend;

    fz_comparison cmp;
    if (fz_comparison_init(&cmp, backends, nbackends) < 0) {
        fputs("ae-difffuzz: out of memory\n", stderr);
        return 2;
    }
    uint8_t bytes[512];
    int status = 0;
    uint64_t seed = start;
    for (; seed - start < seeds; seed++) {
        size_t size = fz_program_size(seed);
        fz_program_bytes(seed, bytes, size);
        fz_program prog;
        fz_program_decode(&prog, bytes, size, both_directions);
        if (verbose) {
            printf("---- program (seed %" PRIu64 ", %zu bytes)\n", seed, size);
            fz_program_print(stdout, &prog);
            fflush(stdout);
        }
        int rc = fz_compare(&cmp, &prog);
        if (verbose)
            fz_comparison_print_traces(&cmp, stdout);
        if (rc == FZ_SETUP_FAILED) {
            fprintf(stderr, "ae-difffuzz: seed %" PRIu64 ": setup failed on %s\n", seed, cmp.failed_backend);
            status = 2;
            break;
        }
        if (rc == FZ_DIFFERENT) {
            printf("ae-difffuzz: seed %" PRIu64 ": the backends disagree\n", seed);
            printf("---- program (seed %" PRIu64 ", %zu bytes)\n", seed, size);
            fz_program_print(stdout, &prog);
            fz_comparison_print_difference(&cmp, stdout);
            printf("---- rerun: ae-difffuzz --seed %" PRIu64 " --verbose", seed);
            for (int b = 0; b < nbackends; b++)
                printf(" %s", backends[b]);
            printf("\n");
            status = 1;
            break;
        }
    }
    if (status == 0)
        printf("ae-difffuzz: seeds %" PRIu64 "..%" PRIu64 ": %d backends agree (%zu trace lines per backend on average;"
               " %llu programs ran away, equally on every backend)\n",
               start, start + seeds - 1, nbackends, seeds ? (size_t)(cmp.total_lines / seeds) : (size_t)0, cmp.runaways);
    fz_comparison_free(&cmp);
    return status;
}
