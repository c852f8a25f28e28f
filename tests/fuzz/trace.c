/* Growable text buffers for traces, and their comparison. */
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(fz_trace *t, size_t more)
{
    if (t->len + more + 1 <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *text = realloc(t->text, cap);
    if (!text) {
        t->out_of_memory = 1;
        return -1;
    }
    t->text = text;
    t->cap = cap;
    return 0;
}

void fz_trace_append(fz_trace *t, const char *text, size_t len)
{
    if (reserve(t, len) < 0)
        return;
    memcpy(t->text + t->len, text, len);
    t->len += len;
    t->text[t->len] = '\0';
}

void fz_trace_vprintf(fz_trace *t, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0 || reserve(t, (size_t)n) < 0)
        return;
    vsnprintf(t->text + t->len, (size_t)n + 1, fmt, ap);
    t->len += (size_t)n;
}

void fz_trace_printf(fz_trace *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fz_trace_vprintf(t, fmt, ap);
    va_end(ap);
}

static int compare_lines(const void *a, const void *b)
{
    const char *la = *(const char *const *)a, *lb = *(const char *const *)b;
    size_t na = strcspn(la, "\n"), nb = strcspn(lb, "\n");
    int c = memcmp(la, lb, na < nb ? na : nb);
    return c ? c : (na > nb) - (na < nb);
}

void fz_trace_append_sorted_lines(fz_trace *t, const fz_trace *src)
{
    const char *text = fz_trace_text(src);
    size_t n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    if (!n)
        return;
    const char **lines = malloc(n * sizeof *lines);
    if (!lines) {
        t->out_of_memory = 1;
        return;
    }
    size_t i = 0;
    for (const char *p = text; *p; p = strchr(p, '\n') + 1)
        lines[i++] = p;
    qsort(lines, n, sizeof *lines, compare_lines);
    for (i = 0; i < n; i++)
        fz_trace_append(t, lines[i], strcspn(lines[i], "\n") + 1);
    free(lines);
}

void fz_trace_clear(fz_trace *t)
{
    t->len = 0;
    t->out_of_memory = 0;
    if (t->text)
        t->text[0] = '\0';
}

void fz_trace_free(fz_trace *t)
{
    free(t->text);
    *t = (fz_trace){0};
}

const char *fz_trace_text(const fz_trace *t)
{
    return t->text ? t->text : "";
}

static size_t line_length(const char *s)
{
    const char *nl = strchr(s, '\n');
    return nl ? (size_t)(nl - s) : strlen(s);
}

int fz_trace_first_difference(const char *a, const char *b, const char **line_a, size_t *len_a,
                              const char **line_b, size_t *len_b)
{
    int line = 1;
    for (;;) {
        size_t la = line_length(a), lb = line_length(b);
        if (la != lb || memcmp(a, b, la) != 0 || (a[la] == '\0') != (b[lb] == '\0')) {
            *line_a = a;
            *len_a = la;
            *line_b = b;
            *len_b = lb;
            return line;
        }
        if (a[la] == '\0')
            return 0;
        a += la + 1;
        b += lb + 1;
        line++;
    }
}
