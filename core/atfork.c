/* fork() in a threaded program. The core's process-wide locks are all taken
 * just before fork() (in one order, the order in which the core nests them)
 * and released on both sides after, so that the child never inherits a lock
 * held by a thread it does not have; the child also forgets the signal
 * handlers that were running on other threads, and counts one more fork, by
 * which each loop notices at its next iteration that it runs in a child. */
#include "internal.h"

atomic_uint ae__fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* None of the four is held while another is taken, nor while a backend
 * makes a loop (a plugin's own atfork lock, taken before these, would
 * invert with it). */
static void atfork_prepare(void)
{
    ae__default_atfork(AE_FORK_PREPARE);
    ae__registry_atfork(AE_FORK_PREPARE);
    ae__child_atfork(AE_FORK_PREPARE);
    ae__signal_atfork(AE_FORK_PREPARE);
}

static void atfork_release(enum ae_fork_phase phase)
{
    ae__signal_atfork(phase);
    ae__child_atfork(phase);
    ae__registry_atfork(phase);
    ae__default_atfork(phase);
}

static void atfork_parent(void) { atfork_release(AE_FORK_PARENT); }

static void atfork_child(void)
{
    atomic_fetch_add_explicit(&ae__fork_generation, 1, memory_order_relaxed);
    atfork_release(AE_FORK_CHILD);
}

static void atfork_register(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

void ae__atfork_init(void) { pthread_once(&atfork_once, atfork_register); }
