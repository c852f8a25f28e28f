/* Commands, after AnyEvent::Util's run_cmd: posix_spawn with the child's
 * signals at their defaults and an empty signal mask, stdin fed from a copy
 * of the input, stdout and stderr captured through pipes, and a condvar sent
 * only once the process exited AND every captured pipe reached end of file,
 * so that no output is ever lost (libuv#610's trap). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define AE_CMD_MAGIC 0x61656364u /* "aecd" */
#define OUT_MAX_DEFAULT ((size_t)64 * 1024 * 1024)
#define READ_CHUNK 16384

extern char **environ;

typedef struct capture {
    int fd; /* our end, -1 once at EOF (or not captured) */
    ae_watcher *io;
    char *buf;
    size_t len, cap;
    bool captured;
} capture;

struct ae_cmd {
    uint32_t magic;
    ae_layer_node node;
    ae_loop *loop;
    pid_t pid;
    int status;
    bool exited;
    ae_watcher *child;
    ae_cv *cv;
    capture cap[2]; /* stdout, stderr */
    size_t out_max;
    char *error; /* why the condvar is croaked */
    /* stdin */
    int in_fd;
    ae_watcher *in_io;
    char *input;
    size_t input_len, input_off;
};

static void capture_close(capture *c)
{
    ae_watcher_free(c->io);
    c->io = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void input_close(ae_cmd *c)
{
    ae_watcher_free(c->in_io);
    c->in_io = NULL;
    if (c->in_fd >= 0)
        close(c->in_fd);
    c->in_fd = -1;
    free(c->input);
    c->input = NULL;
}

/* Reaps the process of a command freed while it ran. */
static void orphan_exited(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)pid, (void)status, (void)arg;
    ae_watcher_free(w);
}

/* reap: a process still running is reaped when it exits (not when the loop
 * itself is being freed). */
static void destroy(ae_cmd *c, bool reap)
{
    ae__layer_remove(&c->node);
    for (int i = 0; i < 2; i++) {
        capture_close(&c->cap[i]);
        free(c->cap[i].buf);
    }
    input_close(c);
    if (c->child && !c->exited && reap) {
        /* Still running: it is reaped when it exits, with nothing of ours. */
        ae_watcher_free(c->child);
        ae_child(c->loop, c->pid, orphan_exited, NULL);
    } else {
        ae_watcher_free(c->child);
    }
    ae_cv_free(c->cv);
    free(c->error);
    c->magic = 0;
    free(c);
}

static void cmd_drop(ae_layer_node *n) { destroy((ae_cmd *)((char *)n - offsetof(ae_cmd, node)), false); }

/* Sent once: exited, and every captured pipe at EOF. The condvar's
 * callback may free the command: nothing of it is touched after. */
static void maybe_done(ae_cmd *c)
{
    if (!c->exited || c->cap[0].fd >= 0 || c->cap[1].fd >= 0 || ae_cv_ready(c->cv))
        return;
    if (c->error)
        ae_cv_croak(c->cv, c->error);
    else
        ae_cv_send(c->cv, (void *)(intptr_t)c->status);
}

static void on_output(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    ae_cmd *c = arg;
    capture *k = w == c->cap[0].io ? &c->cap[0] : &c->cap[1];
    if (k->cap - k->len < READ_CHUNK + 1) {
        size_t cap = k->cap ? k->cap * 2 : READ_CHUNK * 2;
        char *b = realloc(k->buf, cap);
        if (!b) {
            if (!c->error)
                c->error = strdup("ae_cmd: out of memory for the output");
            capture_close(k);
            maybe_done(c);
            return;
        }
        k->buf = b;
        k->cap = cap;
        k->buf[k->len] = '\0';
    }
    ssize_t n = read(k->fd, k->buf + k->len, k->cap - k->len - 1);
    if (n > 0) {
        k->len += (size_t)n;
        k->buf[k->len] = '\0';
        if (k->len > c->out_max) {
            if (!c->error && asprintf(&c->error, "ae_cmd: %s beyond out_max (%zu bytes)",
                                      k == &c->cap[0] ? "stdout" : "stderr", c->out_max) < 0)
                c->error = NULL;
            capture_close(k); /* the writer gets EPIPE */
            maybe_done(c);
        }
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    capture_close(k); /* EOF, or an error that ends the output as well */
    maybe_done(c);
}

static void on_input(ae_watcher *w, int revents, void *arg)
{
    (void)w, (void)revents;
    ae_cmd *c = arg;
    ssize_t n = send(c->in_fd, c->input + c->input_off, c->input_len - c->input_off, MSG_NOSIGNAL);
    if (n > 0)
        c->input_off += (size_t)n;
    else if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0 || c->input_off == c->input_len)
        input_close(c); /* all written (EOF for the child), or it stopped reading */
}

static void on_exit_status(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w, (void)pid;
    ae_cmd *c = arg;
    c->exited = true;
    c->status = status;
    input_close(c);
    maybe_done(c);
}

/* argv[0] as posix_spawnp() would find it: through PATH when it has no
 * '/'. Looked up here too, so that a missing program is AE_ENOENT on every
 * C library and under valgrind (whose fork-like spawn cannot report it). */
static bool program_found(const char *name)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char full[4096];
        if (snprintf(full, sizeof full, "%.*s%s%s", (int)n, p, n ? "/" : "", name) < (int)sizeof full &&
            access(full, X_OK) == 0)
            return true;
        if (!end)
            return false;
        p = end;
    }
}

static int mode_check(int mode, int fd, const char *name)
{
    if (mode < AE_CMD_INHERIT || mode > AE_CMD_FD)
        return ae__set_error(AE_EINVAL, "ae_cmd_run: %s mode %d: one of AE_CMD_INHERIT, _NULL, _CAPTURE, _FD", name,
                             mode);
    if (mode == AE_CMD_FD && (fd < 0 || fcntl(fd, F_GETFD) < 0))
        return ae__set_error(AE_EBADF, "ae_cmd_run: %s fd %d is not open", name, fd);
    return 0;
}

ae_cmd *ae_cmd_run(ae_loop *loop, const ae_cmd_opts *o)
{
    if (!loop || !o || !o->argv || !o->argv[0]) {
        ae__set_error(AE_EINVAL, "ae_cmd_run: %s is NULL", !loop ? "loop" : !o ? "opts" : "argv");
        return NULL;
    }
    if (mode_check(o->out, o->out_fd, "stdout") < 0 || mode_check(o->err, o->err_fd, "stderr") < 0)
        return NULL;
    if (!program_found(o->argv[0])) {
        ae__set_error(AE_ENOENT, "ae_cmd_run: %s: no such program", o->argv[0]);
        return NULL;
    }
    if (!o->input && o->input_len) {
        ae__set_error(AE_EINVAL, "ae_cmd_run: input is NULL");
        return NULL;
    }
    ae_cmd *c = calloc(1, sizeof *c);
    if (!c) {
        ae__set_error(AE_ENOMEM, "ae_cmd_run: out of memory");
        return NULL;
    }
    c->loop = loop;
    c->in_fd = c->cap[0].fd = c->cap[1].fd = -1;
    c->out_max = o->out_max ? o->out_max : OUT_MAX_DEFAULT;
    /* The child's ends, closed here once it runs. */
    int child_fd[3] = {-1, -1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    c->cv = ae_cv_new(loop);
    if (!c->cv || ae__layer_add(loop, &c->node, cmd_drop) < 0)
        goto fail;

    /* stdin: /dev/null, or a socket fed with a copy of the input (a socket,
     * so that a child that does not read it is EPIPE to us, not SIGPIPE). */
    if (!o->input) {
        child_fd[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    } else {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
            child_fd[0] = sv[1];
            c->in_fd = sv[0];
            fcntl(c->in_fd, F_SETFL, O_NONBLOCK);
            shutdown(c->in_fd, SHUT_RD);
        }
        c->input_len = o->input_len;
        c->input = malloc(o->input_len ? o->input_len : 1);
        if (c->input)
            memcpy(c->input, o->input, o->input_len);
    }
    if (child_fd[0] < 0 || (o->input && !c->input)) {
        ae__set_errno("ae_cmd_run: stdin");
        goto fail;
    }
    posix_spawn_file_actions_adddup2(&fa, child_fd[0], 0);

    const int modes[2] = {o->out, o->err}, fds[2] = {o->out_fd, o->err_fd};
    for (int i = 0; i < 2; i++) {
        int target = i + 1;
        switch (modes[i]) {
        case AE_CMD_NULL:
            child_fd[target] = open("/dev/null", O_WRONLY | O_CLOEXEC);
            break;
        case AE_CMD_CAPTURE: {
            int p[2];
            if (pipe2(p, O_CLOEXEC) == 0) {
                child_fd[target] = p[1];
                c->cap[i].fd = p[0];
                c->cap[i].captured = true;
                fcntl(p[0], F_SETFL, O_NONBLOCK);
            }
            break;
        }
        case AE_CMD_FD:
            posix_spawn_file_actions_adddup2(&fa, fds[i], target);
            continue;
        default: /* AE_CMD_INHERIT */
            continue;
        }
        if (child_fd[target] < 0) {
            ae__set_errno(i ? "ae_cmd_run: stderr" : "ae_cmd_run: stdout");
            goto fail;
        }
        posix_spawn_file_actions_adddup2(&fa, child_fd[target], target);
    }
    if (o->cwd)
        posix_spawn_file_actions_addchdir_np(&fa, o->cwd);

    /* Default dispositions for every signal, and an empty mask: the child
     * inherits neither the program's ignored signals nor its blocked ones. */
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

    int err = posix_spawnp(&c->pid, o->argv[0], &fa, &at, (char *const *)o->argv,
                           o->envp ? (char *const *)o->envp : environ);
    if (err) {
        ae__set_error(AE_ENOENT, "ae_cmd_run: %s: %s", o->argv[0], strerror(err));
        goto fail;
    }
    for (int i = 0; i < 3; i++)
        if (child_fd[i] >= 0)
            close(child_fd[i]);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);

    /* From here on the process runs: a failure to watch it ends in the
     * croaked condvar, never in a lost child. */
    c->child = ae_child(loop, c->pid, on_exit_status, c);
    for (int i = 0; i < 2; i++)
        if (c->cap[i].fd >= 0 && !(c->cap[i].io = ae_io(loop, c->cap[i].fd, AE_READ, on_output, c)))
            capture_close(&c->cap[i]);
    if (c->in_fd >= 0 && !(c->in_io = ae_io(loop, c->in_fd, AE_WRITE, on_input, c)))
        input_close(c);
    if (!c->child) {
        c->error = strdup("ae_cmd: cannot watch the process");
        ae_cv_croak(c->cv, c->error ? c->error : "ae_cmd: cannot watch the process");
    }
    c->magic = AE_CMD_MAGIC;
    return c;

fail:
    for (int i = 0; i < 3; i++)
        if (child_fd[i] >= 0)
            close(child_fd[i]);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    destroy(c, false); /* no process to reap */
    return NULL;
}

static bool cmd_ok(const ae_cmd *c, const char *fn)
{
    if (!c || c->magic != AE_CMD_MAGIC) {
        ae__set_error(AE_EINVAL, "%s: not a live command", fn);
        return false;
    }
    return true;
}

ae_cv *ae_cmd_cv(ae_cmd *c) { return cmd_ok(c, "ae_cmd_cv") ? c->cv : NULL; }

pid_t ae_cmd_pid(const ae_cmd *c) { return cmd_ok(c, "ae_cmd_pid") ? c->pid : -1; }

const char *ae_cmd_output(const ae_cmd *c, int which, size_t *len)
{
    if (len)
        *len = 0;
    if (!cmd_ok(c, "ae_cmd_output"))
        return NULL;
    if (which != 1 && which != 2) {
        ae__set_error(AE_EINVAL, "ae_cmd_output: which %d: 1 (stdout) or 2 (stderr)", which);
        return NULL;
    }
    const capture *k = &c->cap[which - 1];
    if (!k->captured) {
        ae__set_error(AE_ESTATE, "ae_cmd_output: %s is not captured", which == 1 ? "stdout" : "stderr");
        return NULL;
    }
    if (len)
        *len = k->len;
    return k->buf ? k->buf : "";
}

void ae_cmd_free(ae_cmd *c)
{
    if (!c)
        return;
    if (cmd_ok(c, "ae_cmd_free"))
        destroy(c, true);
}
