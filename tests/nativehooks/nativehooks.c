/*
 * The core's side of native signals (signal_start, signal_stop,
 * signal_ready): a backend that catches a signal itself and loops of the
 * core's own emulation share one process without losing a signal, whichever
 * handler was installed last, and the disposition is the original one at
 * the end. The backend is tests/nativehooks/nativesig.c, given by path.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "anyevent.h"

static const char *plugin_path;
static unsigned *starts, *deliveries;

static void on_signal(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    (*(int *)arg)++;
}

static bool disposition_is_default(int signum)
{
    struct sigaction sa;
    return sigaction(signum, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL;
}

/* Raises SIGUSR1 and runs both loops until each watcher counted one more. */
static void raise_and_expect(ae_loop *a, int *ca, ae_loop *b, int *cb)
{
    int want_a = ca ? *ca + 1 : 0, want_b = cb ? *cb + 1 : 0;
    raise(SIGUSR1);
    for (int i = 0; i < 1000 && ((ca && *ca < want_a) || (cb && *cb < want_b)); i++) {
        if (a)
            assert_true(ae_run_once(a, AE_NOWAIT) >= 0);
        if (b)
            assert_true(ae_run_once(b, AE_NOWAIT) >= 0);
    }
    if (ca)
        assert_int_equal(*ca, want_a);
    if (cb)
        assert_int_equal(*cb, want_b);
}

static int setup(void **state)
{
    (void)state;
    ae_loop *probe = ae_loop_new(plugin_path);
    if (!probe) {
        fprintf(stderr, "%s: %s\n", plugin_path, ae_last_error());
        return -1;
    }
    ae_loop_free(probe);
    void *handle = dlopen(plugin_path, RTLD_NOW | RTLD_NOLOAD);
    if (!handle)
        return -1;
    starts = dlsym(handle, "nativesig_starts");
    deliveries = dlsym(handle, "nativesig_deliveries");
    dlclose(handle);
    return starts && deliveries ? 0 : -1;
}

static void test_native_signal_is_used(void **state)
{
    (void)state;
    ae_loop *loop = ae_loop_new(plugin_path);
    assert_non_null(loop);
    assert_string_equal(ae_loop_backend(loop), "nativesig");
    unsigned s0 = *starts, d0 = *deliveries;
    int count = 0;
    ae_watcher *w = ae_signal(loop, SIGUSR1, on_signal, &count);
    assert_non_null(w);
    assert_int_equal(*starts, s0 + 1);
    raise_and_expect(loop, &count, NULL, NULL);
    assert_true(*deliveries > d0); /* caught by the backend, not the core */
    ae_loop_free(loop);
    assert_true(disposition_is_default(SIGUSR1));
}

/* The backend's handler first, the core's over it: the core's catches for
 * both; when the backend lets go (and resets to SIG_DFL), the core puts its
 * own back for the loop that still watches. */
static void test_backend_first_then_core(void **state)
{
    (void)state;
    ae_loop *native = ae_loop_new(plugin_path), *poll = ae_loop_new("poll");
    assert_non_null(native);
    assert_non_null(poll);
    int cn = 0, cp = 0;
    ae_watcher *wn = ae_signal(native, SIGUSR1, on_signal, &cn);
    ae_watcher *wp = ae_signal(poll, SIGUSR1, on_signal, &cp);
    assert_non_null(wn);
    assert_non_null(wp);
    raise_and_expect(native, &cn, poll, &cp);
    ae_watcher_free(wn); /* the backend resets SIGUSR1 to SIG_DFL */
    assert_false(disposition_is_default(SIGUSR1));
    raise_and_expect(native, NULL, poll, &cp); /* would kill the process without the reclaim */
    ae_watcher_free(wp);
    assert_true(disposition_is_default(SIGUSR1));
    ae_loop_free(native);
    ae_loop_free(poll);
}

/* The core's handler first, the backend's over it: the backend's catches
 * for both; the core, letting go, leaves the backend's handler alone. */
static void test_core_first_then_backend(void **state)
{
    (void)state;
    ae_loop *native = ae_loop_new(plugin_path), *poll = ae_loop_new("poll");
    int cn = 0, cp = 0;
    ae_watcher *wp = ae_signal(poll, SIGUSR1, on_signal, &cp);
    ae_watcher *wn = ae_signal(native, SIGUSR1, on_signal, &cn);
    assert_non_null(wp);
    assert_non_null(wn);
    unsigned d0 = *deliveries;
    raise_and_expect(native, &cn, poll, &cp);
    assert_true(*deliveries > d0); /* the backend's handler, installed last */
    ae_watcher_free(wp);
    raise_and_expect(native, &cn, poll, NULL);
    ae_watcher_free(wn);
    assert_true(disposition_is_default(SIGUSR1));
    ae_loop_free(native);
    ae_loop_free(poll);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] != '/') {
        fprintf(stderr, "usage: %s /ABSOLUTE/PATH/anyevent-nativesig.so\n", argv[0]);
        return 2;
    }
    plugin_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native_signal_is_used),
        cmocka_unit_test(test_backend_first_then_core),
        cmocka_unit_test(test_core_first_then_backend),
    };
    return cmocka_run_group_tests_name("nativehooks", tests, setup, NULL);
}
