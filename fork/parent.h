/* The parent side of anyevent/fork.h, shared by the files of fork/. */
#ifndef AE_FORK_PARENT_H
#define AE_FORK_PARENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "anyevent/fork.h"
#include "wire.h"
#include "internal.h" /* core: per-loop free hooks, errors */

#define AE_FORK_MAGIC 0x6165666bu /* "aefk" */

typedef struct ae_fork_ctx ae_fork_ctx;

/* Everything fork/ made on one loop; freed with it (ae__loop_on_free). */
struct ae_fork_ctx {
    ae_loop *loop;
    ae_fork *forks; /* every ae_fork, also freed ones still being reaped */
    ae_rpc *rpcs;
    ae_pool *pools;
    ae_fork *default_tmpl;
};

/* One queued frame (its header included), written in order; fd goes with
 * its first byte and is closed once sent. */
struct ae_chunk {
    struct ae_chunk *next;
    size_t len, off;
    int fd;
    unsigned char data[];
};

enum ae_fork_state {
    AE_F_PREP,    /* taking commands; may be a template */
    AE_F_RUN,     /* run (or RPC) sent, waiting for READY */
    AE_F_RUNNING, /* READY came: the socket went to whoever asked for the run */
    AE_F_FAILED,
};

struct ae_fork {
    uint32_t magic;
    enum ae_fork_state state;
    ae_fork_ctx *ctx;
    ae_fork *next, *prev;
    ae_fork *tmpl; /* forked from it; NULL for a helper, or once tmpl is gone */
    int sock;      /* our end, -1 once closed or handed over */
    pid_t pid;
    ae_watcher *io, *child, *defer;
    bool hello, exited, is_default;
    bool wait_status; /* its socket closed: fail it with its wait status */
    bool wait_tmpl;   /* closed before hello: fail it with the template's status */
    bool kids_waiting; /* a fork of it waits for its status or error: read its socket */
    bool write_closed; /* the peer took no more: read what it said, then EOF */
    bool cb_due;      /* the run callback has not run yet */
    bool freed;       /* ae_fork_free() was called: reap, then forget */
    bool ran;         /* run (or RPC) was asked for */
    bool exit_due;    /* the exit callback has not run yet */
    bool owned;       /* an ae_rpc owns it: killed with the loop */
    bool child_unref; /* child is unref'd: an idle template keeps no ae_run() going */
    bool forwarded;   /* portable path: not our child; its status comes in EXIT frames of tmpl */
    bool remote_watch; /* waiting for that EXIT frame (counted in tmpl->kids_watched) */
    int kids_watched;  /* forks of this template waiting for their EXIT frames */
    struct ae_fork_exit { pid_t pid; int status; } *unclaimed; /* EXITs that came before their HELLO */
    int n_unclaimed, cap_unclaimed;
    int calling;      /* user callbacks of it under way */
    int status;
    char *error;
    struct ae_chunk *out, *out_tail;
    unsigned char hdr[AE_FORK_HDR_SIZE];
    size_t hdr_have, pay_have;
    unsigned char *pay;
    ae_fork_cb run_cb;
    void *run_arg;
    void (*exit_cb)(ae_fork *, int, void *);
    void *exit_arg;
};

ae_fork_ctx *ae__fork_ctx(ae_loop *loop); /* created on first use; NULL on failure */
bool ae__fork_ok(const ae_fork *p, const char *fn);
ae_fork *ae__fork_alloc(ae_fork_ctx *ctx, int sock, pid_t pid);
/* p failed: keep the first message, close its socket, reap it; its run
 * callback runs on the loop (next iteration). */
void ae__fork_fail(ae_fork *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ae__fork_start(ae_fork *p); /* the io watcher on p->sock; fails p if it cannot */
/* Queue run (cmd AE_W_RUN) or RPC (AE_W_RPC) of symbol. */
int ae__fork_run_cmd(ae_fork *p, int cmd, const char *symbol, ae_fork_cb cb, void *arg);
void ae__fork_status_text(char *buf, size_t size, pid_t pid, int status);

/* spawn.c */
ae_fork *ae__fork_spawn_helper(ae_fork_ctx *ctx);

/* rpc.c, pool.c: free without callbacks, with the loop */
void ae__rpc_destroy(ae_rpc *r);
void ae__pool_destroy(ae_pool *pool);

#endif
