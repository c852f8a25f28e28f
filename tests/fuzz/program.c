/* Decoding bytes into fuzzer programs, generating them from a seed, printing
 * them. */
#include "program.h"

#include <signal.h>

typedef struct byte_reader {
    const uint8_t *data;
    size_t size, pos;
} byte_reader;

/* The next byte, 0 once the input is used up: every input is a program. */
static uint8_t next_byte(byte_reader *r)
{
    return r->pos < r->size ? r->data[r->pos++] : 0;
}

/* Weighted choices: a byte indexes these tables modulo their length. */
static const uint8_t action_table[] = {
    FZ_TIMER, FZ_TIMER, FZ_TIMER, FZ_IDLE, FZ_IO, FZ_IO, FZ_IO, FZ_SOURCE, FZ_SOURCE,
    FZ_FREE, FZ_FREE, FZ_FREE, FZ_IO_SET, FZ_IO_SET, FZ_TIMER_SET, FZ_TIMER_SET, FZ_ACTIVE,
    FZ_CV_NEW, FZ_CV_NEW, FZ_CV_SEND, FZ_CV_CROAK, FZ_CV_BEGIN, FZ_CV_END, FZ_CV_FREE,
    FZ_CV_CB, FZ_CV_CB, FZ_CV_READY, FZ_FD_WRITE, FZ_FD_WRITE, FZ_FD_DRAIN, FZ_FD_FILL,
    FZ_FD_CLOSE_PEER, FZ_FD_BURST,
};

static const uint8_t top_table[] = {
    FZ_TOP_ACTION, FZ_TOP_ACTION, FZ_TOP_ACTION, FZ_TOP_ACTION, FZ_TOP_ACTION, FZ_TOP_ACTION,
    FZ_TOP_ACTION, FZ_TOP_ACTION, FZ_TOP_ACTION, FZ_TOP_ACTION, FZ_TOP_ACTION, FZ_TOP_ACTION,
    FZ_TOP_RUN_NOWAIT, FZ_TOP_RUN_NOWAIT, FZ_TOP_RUN_NOWAIT, FZ_TOP_RUN_NOWAIT, FZ_TOP_RUN_NOWAIT,
    FZ_TOP_RUN_ONCE, FZ_TOP_RUN_ONCE, FZ_TOP_RUN_BREAK, FZ_TOP_RUN_BREAK, FZ_TOP_RECV,
    FZ_TOP_RECV, FZ_TOP_RAISE, FZ_TOP_RAISE, FZ_TOP_SPAWN, FZ_TOP_NOW_UPDATE,
};

#define TABLE_LEN(t) (sizeof(t) / sizeof((t)[0]))

static fz_action decode_action(byte_reader *r)
{
    fz_action a;
    a.op = action_table[next_byte(r) % TABLE_LEN(action_table)];
    a.slot = next_byte(r) % FZ_SLOTS;
    a.arg = next_byte(r);
    a.script = next_byte(r) % FZ_SCRIPTS;
    return a;
}

void fz_program_decode(fz_program *prog, const uint8_t *data, size_t size, bool both_directions)
{
    byte_reader r = {data, size, 0};
    prog->both_directions = both_directions;
    prog->nlanes = 1 + next_byte(&r) % FZ_MAX_LANES;
    for (int i = 0; i < prog->nlanes; i++) {
        uint8_t b = next_byte(&r);
        prog->lanes[i].kind = b % FZ_LANE_KINDS;
        prog->lanes[i].signal = (b / FZ_LANE_KINDS) & 1;
    }
    for (int s = 0; s < FZ_SCRIPTS; s++) {
        prog->script_len[s] = next_byte(&r) % (FZ_SCRIPT_LEN + 1);
        for (int i = 0; i < prog->script_len[s]; i++)
            prog->scripts[s][i] = decode_action(&r);
    }
    prog->nsteps = 0;
    while (r.pos < r.size && prog->nsteps < FZ_MAX_STEPS) {
        fz_step *st = &prog->steps[prog->nsteps++];
        st->op = top_table[next_byte(&r) % TABLE_LEN(top_table)];
        st->lane = next_byte(&r) % prog->nlanes;
        if (st->op == FZ_TOP_ACTION) {
            st->arg = 0;
            st->action = decode_action(&r);
        } else {
            st->arg = next_byte(&r);
            st->action = (fz_action){0, 0, 0, 0};
        }
    }
}

/* splitmix64: a small PRNG with good output for consecutive seeds. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

size_t fz_program_size(uint64_t seed)
{
    uint64_t state = seed ^ 0x5eed5eed5eed5eedu;
    return 48 + (size_t)(splitmix64(&state) % 320);
}

void fz_program_bytes(uint64_t seed, uint8_t *buf, size_t size)
{
    uint64_t state = seed;
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)(splitmix64(&state) >> 56);
}

const char *fz_action_name(int op)
{
    static const char *const names[FZ_ACTION_OPS] = {
        "timer", "idle", "io", "source", "free", "io_set", "timer_set", "active",
        "cv_new", "cv_send", "cv_croak", "cv_begin", "cv_end", "cv_free", "cv_cb", "cv_ready",
        "fd_write", "fd_drain", "fd_fill", "fd_close_peer", "fd_burst",
    };
    return op >= 0 && op < FZ_ACTION_OPS ? names[op] : "?";
}

const char *fz_lane_kind_name(int kind)
{
    static const char *const names[FZ_LANE_KINDS] = {
        "plain", "pipe-read", "pipe-write", "socket", "signal", "child",
    };
    return kind >= 0 && kind < FZ_LANE_KINDS ? names[kind] : "?";
}

int fz_lane_io_events(const fz_program *prog, const fz_lane *lane)
{
    switch (lane->kind) {
    case FZ_LANE_PIPE_READ:
        return 1; /* AE_READ */
    case FZ_LANE_PIPE_WRITE:
        return 2; /* AE_WRITE */
    case FZ_LANE_SOCKET:
        return prog->both_directions ? 3 : lane->signal ? 2 : 1;
    default:
        return 0;
    }
}

int fz_lane_signal(const fz_lane *lane)
{
    return lane->signal ? SIGUSR2 : SIGUSR1;
}

/* Long enough never to come due while a program runs. */
#define FZ_LONG 3600.0
/* Below the resolution of the monotonic time as a double: a repeating timer
 * with this interval repeats once per iteration (docs/api.md, ae_timer). */
#define FZ_TINY 1e-300

void fz_timer_times(uint8_t arg, double *after, double *interval)
{
    static const double table[][2] = {
        {0, 0}, {0, 0}, {0, FZ_TINY}, {FZ_LONG, 0}, {0, FZ_LONG}, {FZ_LONG, FZ_LONG},
    };
    const double *t = table[arg % (sizeof table / sizeof table[0])];
    *after = t[0];
    *interval = t[1];
}

static void print_action(FILE *out, const fz_action *a)
{
    fprintf(out, "%s slot=%d arg=%d script=%d", fz_action_name(a->op), a->slot, a->arg, a->script);
}

void fz_program_print(FILE *out, const fz_program *prog)
{
    static const char *const top_names[FZ_TOP_OPS] = {
        "action", "run_nowait", "run_once", "run_break", "recv", "raise", "spawn", "now_update",
    };
    for (int i = 0; i < prog->nlanes; i++)
        fprintf(out, "lane %d: %s%s\n", i, fz_lane_kind_name(prog->lanes[i].kind),
                prog->lanes[i].kind == FZ_LANE_SIGNAL ? (prog->lanes[i].signal ? " SIGUSR2" : " SIGUSR1")
                : prog->lanes[i].kind == FZ_LANE_SOCKET && !prog->both_directions ? (prog->lanes[i].signal ? " write" : " read")
                : "");
    for (int s = 0; s < FZ_SCRIPTS; s++) {
        if (!prog->script_len[s])
            continue;
        fprintf(out, "script %d:", s);
        for (int i = 0; i < prog->script_len[s]; i++) {
            fputs(i ? "; " : " ", out);
            print_action(out, &prog->scripts[s][i]);
        }
        fputc('\n', out);
    }
    for (int i = 0; i < prog->nsteps; i++) {
        const fz_step *st = &prog->steps[i];
        fprintf(out, "step %d: ", i);
        if (st->op == FZ_TOP_ACTION) {
            fprintf(out, "lane %d ", st->lane);
            print_action(out, &st->action);
        } else {
            fprintf(out, "%s lane=%d arg=%d", top_names[st->op], st->lane, st->arg);
        }
        fputc('\n', out);
    }
}
