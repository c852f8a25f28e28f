/*
 * Traces of the differential fuzzer: text, one observed fact per line, that
 * must come out identical on every backend.
 */
#ifndef FUZZ_TRACE_H
#define FUZZ_TRACE_H

#include <stdarg.h>
#include <stddef.h>

typedef struct fz_trace {
    char *text; /* NUL-terminated once anything was added; NULL before */
    size_t len, cap;
    int out_of_memory; /* set when an append failed; the trace is then incomplete */
} fz_trace;

/* Append text (a line is added by the caller's "\n"). */
void fz_trace_append(fz_trace *t, const char *text, size_t len);

/* Append formatted text. */
void fz_trace_printf(fz_trace *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fz_trace_vprintf(fz_trace *t, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Append the lines of src to t in sorted order (strcmp). */
void fz_trace_append_sorted_lines(fz_trace *t, const fz_trace *src);

/* Empty the trace, keeping its memory. */
void fz_trace_clear(fz_trace *t);

/* Release the memory; the trace is empty and usable afterwards. */
void fz_trace_free(fz_trace *t);

/* The text, "" for an empty trace. */
const char *fz_trace_text(const fz_trace *t);

/* Compare two texts line by line. Returns 0 if equal, else the 1-based
 * number of the first differing line, with line_a and line_b set to that
 * line in a and b (or to "" past the end) and len_a and len_b to its length. */
int fz_trace_first_difference(const char *a, const char *b, const char **line_a, size_t *len_a,
                              const char **line_b, size_t *len_b);

#endif
