/*
 * libFuzzer harness of the differential fuzzer: the fuzzer's bytes are a
 * program (program.h, the same decoding as ae-difffuzz's seeds), run on
 * several backends; the process aborts when their traces differ.
 *
 * Built only with clang (meson: -fsanitize=fuzzer), as ae-fuzz-program:
 *
 *   CC=clang meson setup build-fuzz-clang -Db_sanitize=address,undefined -Db_lundef=false
 *   meson compile -C build-fuzz-clang tests/fuzz/ae-fuzz-program
 *   mkdir -p corpus
 *   build-fuzz-clang/tests/fuzz/ae-fuzz-program corpus -max_total_time=600 -max_len=512
 *
 * Backends compared: AE_FUZZ_BACKENDS (comma-separated), else poll, select,
 * libev, libuv, and the epoll plugin when it loads; each input is run twice,
 * first with watchers on sockets keeping to one direction, then with both
 * directions (libevent is in both since its plugin reports a fd ready both
 * ways once). On a difference the program and the first differing trace
 * lines are printed before the abort; the crash file libFuzzer writes can be
 * replayed with the same command and the file's name instead of corpus.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anyevent.h"
#include "difference.h"
#include "program.h"

#define MAX_BACKENDS 8

static const char *single_backends[MAX_BACKENDS];
static int nsingle;
static const char *both_backends[MAX_BACKENDS];
static int nboth;
static fz_comparison single_cmp, both_cmp;

static int backend_loads(const char *name)
{
    ae_loop *loop = ae_loop_new(name);
    if (!loop)
        return 0;
    ae_loop_free(loop);
    return 1;
}

static void add_backend(const char *name)
{
    if (nsingle == MAX_BACKENDS || !backend_loads(name))
        return;
    single_backends[nsingle++] = name;
    both_backends[nboth++] = name;
}

static void choose_backends(void)
{
    const char *env = getenv("AE_FUZZ_BACKENDS");
    if (env && *env) {
        static char list[256];
        snprintf(list, sizeof list, "%s", env);
        for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save))
            add_backend(name);
    } else {
        static const char *const defaults[] = {"poll", "select", "libev", "libevent", "libuv", "epoll"};
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
            add_backend(defaults[i]);
    }
    if (nsingle < 2) {
        fprintf(stderr, "ae-fuzz-program: fewer than two backends load (AE_FUZZ_BACKENDS=%s)\n", env ? env : "");
        abort();
    }
    fprintf(stderr, "ae-fuzz-program: comparing");
    for (int i = 0; i < nsingle; i++)
        fprintf(stderr, " %s", single_backends[i]);
    fprintf(stderr, "\n");
    if (fz_comparison_init(&single_cmp, single_backends, nsingle) < 0 ||
        fz_comparison_init(&both_cmp, both_backends, nboth) < 0)
        abort();
}

static void compare(fz_comparison *cmp, const uint8_t *data, size_t size, bool both_directions)
{
    if (cmp->nbackends < 2)
        return;
    fz_program prog;
    fz_program_decode(&prog, data, size, both_directions);
    int rc = fz_compare(cmp, &prog);
    if (rc == FZ_SAME)
        return;
    if (rc == FZ_SETUP_FAILED) {
        /* Out of fds or memory: not a finding about the backends. */
        fprintf(stderr, "ae-fuzz-program: setup failed on %s: %s", cmp->failed_backend,
                fz_trace_text(&cmp->traces[0]));
        return;
    }
    printf("ae-fuzz-program: the backends disagree%s\n---- program\n",
           both_directions ? " (both directions)" : "");
    fz_program_print(stdout, &prog);
    fz_comparison_print_difference(cmp, stdout);
    fz_comparison_print_traces(cmp, stdout);
    fflush(stdout);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!nsingle)
        choose_backends();
    compare(&single_cmp, data, size, false);
    compare(&both_cmp, data, size, true);
    return 0;
}
