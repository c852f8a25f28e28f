/* Judging one check from its isolated run (see verdict.h). */
#include "verdict.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    int signum;
    const char *name;
} signal_names[] = {
    {SIGSEGV, "SIGSEGV"}, {SIGBUS, "SIGBUS"},   {SIGABRT, "SIGABRT"}, {SIGFPE, "SIGFPE"},
    {SIGILL, "SIGILL"},   {SIGKILL, "SIGKILL"}, {SIGTERM, "SIGTERM"}, {SIGALRM, "SIGALRM"},
    {SIGPIPE, "SIGPIPE"}, {SIGSYS, "SIGSYS"},   {SIGTRAP, "SIGTRAP"}, {SIGXCPU, "SIGXCPU"},
    {SIGINT, "SIGINT"},   {SIGHUP, "SIGHUP"},   {SIGUSR1, "SIGUSR1"}, {SIGUSR2, "SIGUSR2"},
    {SIGQUIT, "SIGQUIT"}, {SIGCHLD, "SIGCHLD"},
};

const char *verdict_signal_name(int signum, char *buf, size_t size)
{
    for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
        if (signal_names[i].signum == signum)
            return signal_names[i].name;
    snprintf(buf, size, "signal %d", signum);
    return buf;
}

/* Appends text to the reason, after "; " if it has something already. */
static void add(check_verdict *v, const char *text, size_t len)
{
    size_t used = strlen(v->reason);
    if (used + 3 >= sizeof v->reason || len == 0)
        return;
    if (used) {
        memcpy(v->reason + used, "; ", 2);
        used += 2;
    }
    size_t room = sizeof v->reason - 1 - used;
    if (len > room)
        len = room;
    memcpy(v->reason + used, text, len);
    v->reason[used + len] = '\0';
}

static void add_str(check_verdict *v, const char *text)
{
    add(v, text, strlen(text));
}

static bool starts_with(const char *line, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(line, prefix, n) == 0;
}

/* Whether line (len bytes) is exactly prefix followed by name, then end or
 * the given tail. */
static bool names_check(const char *line, size_t len, const char *prefix, const char *name, const char *tail)
{
    size_t p = strlen(prefix), n = strlen(name), t = strlen(tail);
    return len == p + n + t && memcmp(line, prefix, p) == 0 && memcmp(line + p, name, n) == 0 &&
           memcmp(line + p + n, tail, t) == 0;
}

/* One message line of a failed assertion, made short: cmocka's
 * "PATH:LINE: error: Failure!" becomes the location, kept for the end;
 * "Test failed with exception: Segmentation fault(11)" (cmocka caught a
 * signal in the check) becomes "crashed: SIGSEGV". */
static void add_message_line(check_verdict *v, const char *line, size_t len, char *where, size_t where_size)
{
    static const char failure[] = ": error: Failure!";
    static const char exception[] = "Test failed with exception: ";
    size_t f = sizeof failure - 1;
    if (len > f && memcmp(line + len - f, failure, f) == 0) {
        const char *path_end = line + len - f;
        const char *base = line;
        for (const char *c = line; c < path_end; c++)
            if (*c == '/')
                base = c + 1;
        snprintf(where, where_size, "%.*s", (int)(path_end - base), base);
        return;
    }
    if (starts_with(line, len, exception)) {
        const char *open = memchr(line, '(', len);
        int signum = open ? atoi(open + 1) : 0;
        char buf[32], text[64];
        snprintf(text, sizeof text, "crashed: %s", signum > 0 ? verdict_signal_name(signum, buf, sizeof buf) : "?");
        add_str(v, text);
        return;
    }
    add(v, line, len);
}

/* The first line of a sanitizer's report in the output, shortened into buf;
 * NULL if there is none. (valgrind writes its reports on a descriptor of its
 * own, not into the check's pipe.) */
static const char *diagnostic(const isolated_run *run, char *buf, size_t size)
{
    const char *line = run->output;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *found = NULL;
        const char *sanitizer = memmem(line, len, "Sanitizer: ", 11);
        const char *runtime = memmem(line, len, "runtime error: ", 15);
        if (sanitizer && memmem(line, len, "ERROR: ", 7)) {
            /* "==123==ERROR: AddressSanitizer: SEGV on unknown address 0x10 (pc ..." */
            found = memmem(line, len, "ERROR: ", 7) + 7;
        } else if (runtime) {
            found = line; /* UBSan: "FILE:LINE:COL: runtime error: ..." */
        }
        if (found) {
            size_t n = (size_t)(line + len - found);
            const char *pc = memmem(found, n, " (pc ", 5);
            if (pc)
                n = (size_t)(pc - found);
            snprintf(buf, size, "%.*s", (int)n, found);
            return buf;
        }
        line = end ? end + 1 : NULL;
    }
    return NULL;
}

/* The signal a sanitizer's report names ("AddressSanitizer: SEGV on ..."),
 * which ends the process with SIGABRT or an exit status instead. */
static const char *sanitizer_signal(const char *diag)
{
    static const char *const names[] = {"SEGV", "BUS", "FPE", "ILL", "ABRT"};
    const char *s = diag ? strstr(diag, "Sanitizer: ") : NULL;
    if (!s)
        return NULL;
    s += 11;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i]);
        if (strncmp(s, names[i], n) == 0 && (s[n] == ' ' || s[n] == '\0'))
            return names[i];
    }
    return NULL;
}

void verdict_judge(const char *name, const isolated_run *run, double timeout, check_verdict *v)
{
    memset(v, 0, sizeof *v);
    bool started = false, succeeded = false, failed = false, in_message = false;
    char where[256] = "";
    const char *line = run->output;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (in_message) {
            /* cmocka's messages end with a newline, so "]" has a line of
             * its own ("ws[i]" is a message line). */
            if (len == 1 && line[0] == ']')
                in_message = false;
            else
                add_message_line(v, line, len, where, sizeof where);
        } else if (names_check(line, len, "test: ", name, "")) {
            started = true;
        } else if (names_check(line, len, "success: ", name, "")) {
            succeeded = true;
        } else if (names_check(line, len, "failure: ", name, " [")) {
            failed = true;
            in_message = true;
        } else if (starts_with(line, len, "failure: ") || starts_with(line, len, "error: ")) {
            /* "error: NAME [ message ]" (a fixture failed), or a message on one line */
            failed = true;
            const char *open = memchr(line, '[', len);
            if (open) {
                const char *close = line + len;
                while (close > open && close[-1] != ']')
                    close--;
                if (close > open + 1)
                    add(v, open + 1, (size_t)(close - 1 - (open + 1)));
            }
        } else if (started && starts_with(line, len, "ERROR: ")) {
            add(v, line + 7, len - 7); /* fail_msg()'s message comes before the failure */
        }
        line = end ? end + 1 : NULL;
    }
    if (where[0]) {
        char loc[300];
        snprintf(loc, sizeof loc, "(%s)", where);
        size_t used = strlen(v->reason);
        if (used + 1 + strlen(loc) < sizeof v->reason)
            snprintf(v->reason + used, sizeof v->reason - used, "%s%s", used ? " " : "", loc);
    }

    char diag_buf[200], sig_buf[32], text[300];
    const char *diag = diagnostic(run, diag_buf, sizeof diag_buf);
    const char *by_sanitizer = sanitizer_signal(diag);
    if (run->end == ISOLATED_TIMED_OUT) {
        v->reason[0] = '\0';
        snprintf(text, sizeof text, "timed out after %g s", timeout);
        add_str(v, text);
        return;
    }
    if (failed) {
        if (!v->reason[0])
            add_str(v, "failed without a message");
        /* cmocka exits with 1 after a failure; anything else came later,
         * a leak checker's report at exit, say. */
        if (run->end == ISOLATED_SIGNALED)
            snprintf(text, sizeof text, "then at exit: %s", verdict_signal_name(run->code, sig_buf, sizeof sig_buf));
        else if (run->code != 1)
            snprintf(text, sizeof text, "then at exit: status %d", run->code);
        else
            return;
        if (diag && strlen(text) + strlen(diag) + 4 < sizeof text)
            snprintf(text + strlen(text), sizeof text - strlen(text), " (%s)", diag);
        add_str(v, text);
        return;
    }
    if (run->end == ISOLATED_EXITED && run->code == 0 && succeeded)
        return (void)(v->passed = true);
    const char *before = succeeded ? "passed, but then " : !started ? "before it started: " : "";
    if (by_sanitizer) {
        snprintf(text, sizeof text, "%scrashed: SIG%s (%s)", before, by_sanitizer, diag);
    } else if (run->end == ISOLATED_SIGNALED) {
        snprintf(text, sizeof text, "%scrashed: %s%s%s%s", before, verdict_signal_name(run->code, sig_buf, sizeof sig_buf),
                 diag ? " (" : "", diag ? diag : "", diag ? ")" : "");
    } else {
        snprintf(text, sizeof text, "%sexited with status %d%s%s%s%s", before, run->code,
                 succeeded ? "" : " without a result", diag ? " (" : "", diag ? diag : "", diag ? ")" : "");
    }
    add_str(v, text);
}
