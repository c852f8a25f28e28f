/*
 * The churn scenario (see churn.h). Every callback takes one or two random
 * steps: create a watcher of a random kind, free a random live watcher (the
 * running one, one due later in the same iteration, any), re-arm a timer,
 * pause or resume an io watcher, write to a pipe, raise a signal, let a child
 * process exit. A model says which watchers are alive and what each is owed:
 *
 *  - a callback must belong to a live watcher of the model (each watcher's
 *    arg is a token of its model slot and that slot's generation, so a
 *    callback of a freed watcher is caught even when its slot was reused);
 *  - the watcher's activity (ae_watcher_active) matches the model;
 *  - at the end (the drain), every live armed timer fires, every live signal
 *    watcher is called after the last signal raised, every child watcher is
 *    told of its child's exit, and every pipe a reader watches is emptied.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "churn.h"
#include "common.h"

enum kind { K_READ, K_WRITE, K_TIMER, K_SIGNAL, K_CHILD, K_CHILD_ANY, K_IDLE, K_COUNT };

static const char *const kind_names[K_COUNT] = {"io read", "io write", "timer", "signal", "child", "any-child", "idle"};

enum {
    MAX_SLOTS = 512,  /* model slots; the token keeps 16 bits for the index */
    MAX_LIVE = 320,   /* above this, a create step frees instead */
    MAX_ANY = 4,      /* live pid 0 watchers at most */
    PIPES = 24,
    PIPE_CAP = 1024,  /* bytes in flight per pipe at most */
    POOL = 4,         /* children waiting to be let go */
    MAX_SPAWNS = 2048,
};

struct slot {
    ae_watcher *w; /* NULL: the slot is free */
    uintptr_t token;
    enum kind kind;
    int events;          /* io: the mask set now */
    int pipe;            /* io */
    bool armed;          /* timer: will fire (a one-shot that has not fired yet, or repeating) */
    bool repeating;      /* timer */
    bool fired_in_drain; /* timer */
    double due;          /* timer: ae_now() at arming plus the delay, for the statistics only */
    int signum;          /* signal */
    bool expect_signal;  /* signal: raised since this watcher was last called */
    int spawn;           /* child: index in spawns[] */
    bool reported;       /* child: its child's exit was reported */
    bool expect_child;   /* child: its child was let go and it is not told yet */
    int live_pos;        /* index in live[] */
};

struct spawn {
    pid_t pid;
    int gate_w;        /* closing it lets the child exit; -1 once closed */
    int code;          /* its exit code */
    bool released;
    uintptr_t any_expect[MAX_ANY]; /* pid 0 watchers alive when it was let go */
    int n_any_expect;
};

struct churn {
    ae_loop *loop;
    stress_rng rng;
    long steps;
    long target;
    bool draining;
    struct slot slots[MAX_SLOTS];
    int live[MAX_SLOTS];
    int n_live;
    int free_slots[MAX_SLOTS];
    int n_free;
    uintptr_t next_gen;
    int n_any;
    int pipes[PIPES][2];
    long pipe_bytes[PIPES];
    struct spawn spawns[MAX_SPAWNS];
    int n_spawns;
    int pool[POOL];
    ae_watcher *heartbeat;
    /* what happened, printed at the end */
    long created[K_COUNT], freed[K_COUNT], calls[K_COUNT];
    long freed_self, freed_other, freed_ready, rearmed, toggled, bytes_written, raised, released;
    long heartbeat_calls;
    long steps_callbacks; /* callbacks before the drain */
    int max_live;
};

static struct churn *C;

/* ---- the model's slots ---------------------------------------------------- */

static uintptr_t token_of(int idx, uintptr_t gen)
{
    return (gen << 16) | (uintptr_t)idx;
}

static bool alive(int idx, uintptr_t token)
{
    return idx >= 0 && C->slots[idx].w && C->slots[idx].token == token;
}

static bool model_active(const struct slot *s)
{
    switch (s->kind) {
    case K_READ:
    case K_WRITE:
        return s->events != 0;
    case K_TIMER:
        return s->armed;
    case K_CHILD:
        return !s->reported;
    default:
        return true;
    }
}

/* The slot of a callback's watcher; fails if it is not a live watcher of
 * the expected kind. */
static struct slot *slot_of(ae_watcher *w, void *arg, enum kind kind)
{
    uintptr_t token = (uintptr_t)arg;
    int idx = (int)(token & 0xFFFF);
    if (idx >= MAX_SLOTS || !alive(idx, token) || C->slots[idx].w != w)
        fail_msg("step %ld: the callback of a freed %s watcher ran (slot %d, token %#" PRIxPTR ")", C->steps,
                 kind_names[kind], idx, token);
    struct slot *s = &C->slots[idx];
    if (s->kind != kind)
        fail_msg("step %ld: a %s callback for a %s watcher", C->steps, kind_names[kind], kind_names[s->kind]);
    C->calls[kind]++;
    return s;
}

static int slot_take(void)
{
    int idx = C->free_slots[--C->n_free];
    struct slot *s = &C->slots[idx];
    memset(s, 0, sizeof *s);
    s->token = token_of(idx, ++C->next_gen);
    s->live_pos = C->n_live;
    C->live[C->n_live++] = idx;
    if (C->n_live > C->max_live)
        C->max_live = C->n_live;
    return idx;
}

static void slot_release(int idx)
{
    struct slot *s = &C->slots[idx];
    int last = C->live[--C->n_live];
    C->live[s->live_pos] = last;
    C->slots[last].live_pos = s->live_pos;
    s->w = NULL;
    s->token = 0;
    C->free_slots[C->n_free++] = idx;
}

/* ---- children ---------------------------------------------------------------- */

/* A new child that waits for its gate to close, then exits with its code. */
static int spawn_child(void)
{
    if (C->n_spawns == MAX_SPAWNS)
        fail_msg("more than %d children", MAX_SPAWNS);
    int sp = C->n_spawns++;
    struct spawn *c = &C->spawns[sp];
    int gate[2];
    if (pipe2(gate, O_CLOEXEC) < 0)
        fail_msg("pipe2: %s", strerror(errno));
    c->code = 1 + sp % 200;
    char script[48];
    snprintf(script, sizeof script, "read x <&3; exit %d", c->code);
    c->pid = stress_spawn_shell(script, gate[0], -1);
    close(gate[0]);
    c->gate_w = gate[1];
    return sp;
}

static void release_child(int sp)
{
    struct spawn *c = &C->spawns[sp];
    c->released = true;
    /* Every watcher alive now must hear of the exit, unless freed first. */
    for (int k = 0; k < C->n_live; k++) {
        struct slot *s = &C->slots[C->live[k]];
        if (s->kind == K_CHILD && s->spawn == sp)
            s->expect_child = true;
        else if (s->kind == K_CHILD_ANY)
            c->any_expect[c->n_any_expect++] = s->token;
    }
    close(c->gate_w);
    c->gate_w = -1;
    C->released++;
}

static struct spawn *spawn_of_pid(pid_t pid)
{
    for (int i = 0; i < C->n_spawns; i++)
        if (C->spawns[i].pid == pid)
            return &C->spawns[i];
    return NULL;
}

static void check_child_status(const struct spawn *c, int status)
{
    if (!c->released)
        fail_msg("step %ld: child %d reported before it was let go", C->steps, (int)c->pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != c->code)
        fail_msg("step %ld: child %d: status %#x, want exit %d", C->steps, (int)c->pid, status, c->code);
}

/* ---- creating and freeing ------------------------------------------------------ */

static void cb_read(ae_watcher *w, int revents, void *arg);
static void cb_write(ae_watcher *w, int revents, void *arg);
static void cb_timer(ae_watcher *w, void *arg);
static void cb_signal(ae_watcher *w, int signum, void *arg);
static void cb_child(ae_watcher *w, pid_t pid, int status, void *arg);
static void cb_child_any(ae_watcher *w, pid_t pid, int status, void *arg);
static void cb_idle(ae_watcher *w, void *arg);

static double random_delay(void)
{
    if (stress_rng_below(&C->rng, 4) == 0)
        return 0;
    return stress_rng_below(&C->rng, 2000) * 1e-6;
}

static void timer_arm_values(struct slot *s, double *after, double *interval)
{
    *after = random_delay();
    s->due = ae_now(C->loop) + *after;
    s->repeating = stress_rng_below(&C->rng, 4) == 0;
    *interval = s->repeating ? (500 + stress_rng_below(&C->rng, 2500)) * 1e-6 : 0;
    s->armed = true;
}

static void create_random(void)
{
    static const enum kind weighted[] = {K_READ,   K_READ,   K_READ,   K_READ,  K_WRITE,     K_WRITE,
                                         K_TIMER,  K_TIMER,  K_TIMER,  K_TIMER, K_TIMER,     K_TIMER,
                                         K_SIGNAL, K_SIGNAL, K_CHILD,  K_CHILD, K_CHILD_ANY, K_IDLE,
                                         K_IDLE};
    enum kind kind = weighted[stress_rng_below(&C->rng, sizeof weighted / sizeof weighted[0])];
    if (kind == K_CHILD_ANY && C->n_any >= MAX_ANY)
        kind = K_TIMER;
    int idx = slot_take();
    struct slot *s = &C->slots[idx];
    s->kind = kind;
    void *arg = (void *)s->token;
    ae_watcher *w = NULL;
    switch (kind) {
    case K_READ:
        s->pipe = (int)stress_rng_below(&C->rng, PIPES);
        s->events = stress_rng_below(&C->rng, 10) ? AE_READ : 0;
        w = ae_io(C->loop, C->pipes[s->pipe][0], s->events, cb_read, arg);
        break;
    case K_WRITE:
        s->pipe = (int)stress_rng_below(&C->rng, PIPES);
        s->events = stress_rng_below(&C->rng, 10) ? AE_WRITE : 0;
        w = ae_io(C->loop, C->pipes[s->pipe][1], s->events, cb_write, arg);
        break;
    case K_TIMER: {
        double after, interval;
        timer_arm_values(s, &after, &interval);
        w = ae_timer(C->loop, after, interval, cb_timer, arg);
        break;
    }
    case K_SIGNAL:
        s->signum = stress_rng_below(&C->rng, 2) ? SIGUSR1 : SIGUSR2;
        w = ae_signal(C->loop, s->signum, cb_signal, arg);
        break;
    case K_CHILD:
        s->spawn = C->pool[stress_rng_below(&C->rng, POOL)];
        w = ae_child(C->loop, C->spawns[s->spawn].pid, cb_child, arg);
        break;
    case K_CHILD_ANY:
        w = ae_child(C->loop, 0, cb_child_any, arg);
        C->n_any++;
        break;
    case K_IDLE:
        w = ae_idle(C->loop, cb_idle, arg);
        break;
    case K_COUNT:
        break;
    }
    if (!w)
        fail_msg("step %ld: creating a %s watcher: %s", C->steps, kind_names[kind], ae_last_error());
    s->w = w;
    C->created[kind]++;
}

/* Whether the watcher has an event waiting for it now, so that freeing it
 * drops a call the loop was about to make (statistics only). */
static bool ready_now(const struct slot *s)
{
    switch (s->kind) {
    case K_READ:
        return s->events && C->pipe_bytes[s->pipe] > 0;
    case K_WRITE:
        return s->events != 0;
    case K_TIMER:
        return s->armed && s->due <= ae_now(C->loop);
    case K_SIGNAL:
        return s->expect_signal;
    case K_CHILD:
        return s->expect_child;
    default:
        return false;
    }
}

static void free_slot(int idx)
{
    struct slot *s = &C->slots[idx];
    if (ready_now(s))
        C->freed_ready++;
    ae_watcher_free(s->w);
    if (s->kind == K_CHILD_ANY)
        C->n_any--;
    C->freed[s->kind]++;
    slot_release(idx);
}

/* Re-arm a timer or pause/resume an io watcher, checking first that anyevent
 * says it is active exactly when the model does. */
static void poke(int idx)
{
    struct slot *s = &C->slots[idx];
    if (ae_watcher_active(s->w) != (int)model_active(s))
        fail_msg("step %ld: %s watcher: ae_watcher_active says %d, the model %d", C->steps, kind_names[s->kind],
                 ae_watcher_active(s->w), (int)model_active(s));
    if (s->kind == K_TIMER) {
        double after, interval;
        timer_arm_values(s, &after, &interval);
        assert_int_equal(ae_timer_set(s->w, after, interval), 0);
        C->rearmed++;
    } else if (s->kind == K_READ || s->kind == K_WRITE) {
        int on = s->kind == K_READ ? AE_READ : AE_WRITE;
        s->events = s->events ? 0 : on;
        if (ae_io_set(s->w, s->events) < 0)
            fail_msg("step %ld: ae_io_set: %s", C->steps, ae_last_error());
        C->toggled++;
    }
}

static void write_traffic(int p, int n)
{
    if (C->pipe_bytes[p] + n > PIPE_CAP)
        return;
    static const char bytes[8] = "01234567";
    ssize_t r = write(C->pipes[p][1], bytes, (size_t)n);
    if (r < 0 && errno != EAGAIN)
        fail_msg("write to pipe %d: %s", p, strerror(errno));
    if (r > 0) {
        C->pipe_bytes[p] += r;
        C->bytes_written += r;
    }
}

static void raise_signal(int signum)
{
    if (kill(getpid(), signum) < 0)
        fail_msg("kill: %s", strerror(errno));
    C->raised++;
    /* The handler has run (a signal to oneself is delivered before kill
     * returns): every watcher alive now is owed a call. */
    for (int k = 0; k < C->n_live; k++) {
        struct slot *s = &C->slots[C->live[k]];
        if (s->kind == K_SIGNAL && s->signum == signum)
            s->expect_signal = true;
    }
}

static void start_drain(void);

/* One random step from a callback; self is the running watcher's slot (or
 * -1 for the heartbeat) and its token, to know whether it is still alive. */
static void step(int self, uintptr_t self_token)
{
    stress_progress = ++C->steps;
    if (C->steps >= C->target) {
        start_drain();
        return;
    }
    uint32_t r = stress_rng_below(&C->rng, 10000);
    if (r < 3300) {
        if (C->n_live < MAX_LIVE && C->n_free > 0)
            create_random();
        else
            free_slot(C->live[stress_rng_below(&C->rng, (uint32_t)C->n_live)]);
    } else if (r < 5800) {
        if (C->n_live > 0) {
            int idx = C->live[stress_rng_below(&C->rng, (uint32_t)C->n_live)];
            if (idx == self)
                C->freed_self++;
            else
                C->freed_other++;
            free_slot(idx);
        }
    } else if (r < 6300) {
        if (alive(self, self_token)) {
            free_slot(self);
            C->freed_self++;
        }
    } else if (r < 7800) {
        if (C->n_live > 0)
            poke(C->live[stress_rng_below(&C->rng, (uint32_t)C->n_live)]);
    } else if (r < 9300) {
        write_traffic((int)stress_rng_below(&C->rng, PIPES), 1 + (int)stress_rng_below(&C->rng, 8));
    } else if (r < 9998) {
        raise_signal(stress_rng_below(&C->rng, 2) ? SIGUSR1 : SIGUSR2);
    } else {
        int k = (int)stress_rng_below(&C->rng, POOL);
        release_child(C->pool[k]);
        C->pool[k] = spawn_child();
    }
}

static void steps(int self)
{
    if (C->draining)
        return;
    uintptr_t token = self >= 0 ? C->slots[self].token : 0;
    int n = 1 + (int)stress_rng_below(&C->rng, 2);
    for (int i = 0; i < n && !C->draining; i++)
        step(self, token);
}

/* ---- callbacks ------------------------------------------------------------------ */

static int self_index(void *arg)
{
    return (int)((uintptr_t)arg & 0xFFFF);
}

static void cb_read(ae_watcher *w, int revents, void *arg)
{
    struct slot *s = slot_of(w, arg, K_READ);
    if (revents != AE_READ || !(s->events & AE_READ))
        fail_msg("step %ld: read watcher with events %d got revents %d", C->steps, s->events, revents);
    /* A few bytes only, so that the fd stays ready; all of them in the drain. */
    char buf[PIPE_CAP];
    size_t want = C->draining ? sizeof buf : 1 + stress_rng_below(&C->rng, 8);
    ssize_t n = read(C->pipes[s->pipe][0], buf, want);
    if (n < 0 && errno != EAGAIN) /* EAGAIN: another watcher of the fd read first */
        fail_msg("read pipe %d: %s", s->pipe, strerror(errno));
    if (n == 0)
        fail_msg("read pipe %d: end of file", s->pipe);
    if (n > 0)
        C->pipe_bytes[s->pipe] -= n;
    steps(self_index(arg));
}

static void cb_write(ae_watcher *w, int revents, void *arg)
{
    struct slot *s = slot_of(w, arg, K_WRITE);
    if (revents != AE_WRITE || !(s->events & AE_WRITE))
        fail_msg("step %ld: write watcher with events %d got revents %d", C->steps, s->events, revents);
    if (C->draining) {
        s->events = 0; /* always writable: it would keep the loop spinning */
        assert_int_equal(ae_io_set(w, 0), 0);
        return;
    }
    if (stress_rng_below(&C->rng, 2))
        write_traffic(s->pipe, 1);
    if (stress_rng_below(&C->rng, 2)) {
        s->events = 0;
        assert_int_equal(ae_io_set(w, 0), 0);
    }
    steps(self_index(arg));
}

static void cb_timer(ae_watcher *w, void *arg)
{
    struct slot *s = slot_of(w, arg, K_TIMER);
    if (!s->armed)
        fail_msg("step %ld: a one-shot timer fired twice", C->steps);
    if (!s->repeating) {
        s->armed = false;
        if (ae_watcher_active(w) != 0)
            fail_msg("step %ld: a one-shot timer is still active in its callback", C->steps);
    }
    s->fired_in_drain = true;
    steps(self_index(arg));
}

static void cb_signal(ae_watcher *w, int signum, void *arg)
{
    struct slot *s = slot_of(w, arg, K_SIGNAL);
    if (signum != s->signum)
        fail_msg("step %ld: watcher of signal %d called for %d", C->steps, s->signum, signum);
    s->expect_signal = false;
    steps(self_index(arg));
}

static void cb_child(ae_watcher *w, pid_t pid, int status, void *arg)
{
    struct slot *s = slot_of(w, arg, K_CHILD);
    const struct spawn *c = &C->spawns[s->spawn];
    if (pid != c->pid)
        fail_msg("step %ld: watcher of child %d told of %d", C->steps, (int)c->pid, (int)pid);
    if (s->reported)
        fail_msg("step %ld: child %d reported twice to one watcher", C->steps, (int)pid);
    check_child_status(c, status);
    s->reported = true;
    s->expect_child = false;
    steps(self_index(arg));
}

static void cb_child_any(ae_watcher *w, pid_t pid, int status, void *arg)
{
    struct slot *s = slot_of(w, arg, K_CHILD_ANY);
    struct spawn *c = spawn_of_pid(pid);
    if (!c)
        fail_msg("step %ld: pid 0 watcher told of %d, not a child of this test", C->steps, (int)pid);
    check_child_status(c, status);
    for (int k = 0; k < c->n_any_expect; k++) {
        if (c->any_expect[k] == s->token) {
            c->any_expect[k] = c->any_expect[--c->n_any_expect];
            break;
        }
    }
    steps(self_index(arg));
}

static void cb_idle(ae_watcher *w, void *arg)
{
    slot_of(w, arg, K_IDLE);
    steps(self_index(arg));
}

/* Outside the model, never freed by a step: keeps the loop from blocking
 * forever when only signal and child watchers are left, and takes steps. */
static void cb_heartbeat(ae_watcher *w, void *arg)
{
    (void)w;
    (void)arg;
    C->heartbeat_calls++;
    steps(-1);
}

/* ---- the drain ---------------------------------------------------------------------- */

/* From a callback: no more steps. Idle watchers go (they are owed nothing
 * and would keep the loop spinning); what the others are owed is checked. */
static void start_drain(void)
{
    C->draining = true;
    C->steps_callbacks = 0;
    for (int k = 0; k < K_COUNT; k++)
        C->steps_callbacks += C->calls[k];
    for (int k = C->n_live - 1; k >= 0; k--) {
        struct slot *s = &C->slots[C->live[k]];
        s->fired_in_drain = false;
        if (s->kind == K_IDLE)
            free_slot(C->live[k]);
    }
}

/* What a live watcher is still owed, or NULL. */
static const char *owed(const struct slot *s)
{
    switch (s->kind) {
    case K_TIMER:
        if (s->repeating ? !s->fired_in_drain : s->armed)
            return "an armed timer has not fired";
        return NULL;
    case K_SIGNAL:
        return s->expect_signal ? "a signal watcher was not called after its signal" : NULL;
    case K_CHILD:
        return s->expect_child ? "a child watcher was not told of its child's exit" : NULL;
    case K_READ:
        return s->events && C->pipe_bytes[s->pipe] > 0 ? "a watched pipe still holds bytes" : NULL;
    default:
        return NULL;
    }
}

static const char *first_owed(void)
{
    for (int k = 0; k < C->n_live; k++) {
        const char *why = owed(&C->slots[C->live[k]]);
        if (why)
            return why;
    }
    for (int i = 0; i < C->n_spawns; i++) {
        const struct spawn *c = &C->spawns[i];
        for (int k = 0; k < c->n_any_expect; k++)
            if (alive(self_index((void *)c->any_expect[k]), c->any_expect[k]))
                return "a pid 0 watcher was not told of a child's exit";
    }
    return NULL;
}

static bool drained(void *ctx)
{
    (void)ctx;
    return first_owed() == NULL;
}

static void drain_describe(void *ctx, char *buf, size_t len)
{
    (void)ctx;
    const char *why = first_owed();
    snprintf(buf, len, "%s", why ? why : "nothing owed");
}

static bool target_reached(void *ctx)
{
    (void)ctx;
    return C->draining;
}

static void steps_describe(void *ctx, char *buf, size_t len)
{
    (void)ctx;
    snprintf(buf, len, "%ld of %ld steps, %d watchers alive", C->steps, C->target, C->n_live);
}

/* ---- the test ---------------------------------------------------------------------------- */

void test_churn_random_steps(void **state)
{
    (void)state;
    stress_guard_start("churn", 240);
    C = calloc(1, sizeof *C);
    assert_non_null(C);
    C->target = stress_scaled(1000000, 1000);
    stress_rng_init(&C->rng, 5);
    C->loop = stress_loop_new();
    for (int i = MAX_SLOTS - 1; i >= 0; i--)
        C->free_slots[C->n_free++] = i;
    for (int p = 0; p < PIPES; p++)
        if (pipe2(C->pipes[p], O_NONBLOCK | O_CLOEXEC) < 0)
            fail_msg("pipe2: %s", strerror(errno));
    /* Raised while no watcher of it is left, a signal must not end the test:
     * ignore both; anyevent restores this when their last watcher goes. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_usr1, old_usr2;
    sigaction(SIGUSR1, &ign, &old_usr1);
    sigaction(SIGUSR2, &ign, &old_usr2);
    for (int k = 0; k < POOL; k++)
        C->pool[k] = spawn_child();
    C->heartbeat = ae_timer(C->loop, 0.001, 0.001, cb_heartbeat, NULL);
    assert_non_null(C->heartbeat);
    for (int i = 0; i < 64; i++)
        create_random();

    stress_phase("steps");
    stress_wait_for(C->loop, target_reached, steps_describe, NULL, 150, "random steps");
    stress_phase("drain");
    stress_wait_for(C->loop, drained, drain_describe, NULL, 20, "drain after the steps");
    /* Let the children still waiting go, and hear of them too. */
    for (int k = 0; k < POOL; k++)
        release_child(C->pool[k]);
    stress_phase("drain after the last children");
    stress_wait_for(C->loop, drained, drain_describe, NULL, 20, "drain after the last children");

    printf("churn: %ld steps from %ld callbacks (+%ld heartbeat), at most %d watchers alive\n", C->steps,
           C->steps_callbacks, C->heartbeat_calls, C->max_live);
    for (int k = 0; k < K_COUNT; k++)
        printf("churn: %-9s created %7ld, freed %7ld, callbacks %8ld\n", kind_names[k], C->created[k], C->freed[k],
               C->calls[k]);
    printf("churn: freed the running watcher %ld times, another %ld times, %ld with an event waiting for it; "
           "%ld timer re-arms, %ld io pauses/resumes, "
           "%ld bytes written, %ld signals raised, %ld children let go\n",
           C->freed_self, C->freed_other, C->freed_ready, C->rearmed, C->toggled, C->bytes_written, C->raised,
           C->released);

    while (C->n_live > 0)
        free_slot(C->live[C->n_live - 1]);
    ae_watcher_free(C->heartbeat);
    assert_int_equal(ae_run_once(C->loop, AE_NOWAIT), 0);
    ae_loop_free(C->loop);
    sigaction(SIGUSR1, &old_usr1, NULL);
    sigaction(SIGUSR2, &old_usr2, NULL);
    for (int p = 0; p < PIPES; p++) {
        close(C->pipes[p][0]);
        close(C->pipes[p][1]);
    }
    /* Children nobody watched at their exit are still zombies: reap them. */
    stress_phase("reap");
    for (int i = 0; i < C->n_spawns; i++) {
        stress_progress = i;
        int status;
        pid_t r;
        double deadline = stress_mono() + 20;
        while ((r = waitpid(C->spawns[i].pid, &status, WNOHANG)) == 0 && stress_mono() < deadline)
            usleep(1000);
        if (r == 0)
            fail_msg("child %d, let go, has not exited after 20 s", (int)C->spawns[i].pid);
        if (r == C->spawns[i].pid)
            check_child_status(&C->spawns[i], status);
        else if (errno != ECHILD)
            fail_msg("waitpid(%d): %s", (int)C->spawns[i].pid, strerror(errno));
    }
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    free(C);
    C = NULL;
}
