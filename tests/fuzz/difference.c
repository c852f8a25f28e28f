/* Running one program on several backends and comparing the traces. */
#include "difference.h"

#include <stdlib.h>
#include <string.h>

#include "interp.h"

int fz_comparison_init(fz_comparison *cmp, const char *const *backends, int nbackends)
{
    memset(cmp, 0, sizeof *cmp);
    cmp->backends = backends;
    cmp->nbackends = nbackends;
    cmp->traces = calloc((size_t)nbackends, sizeof *cmp->traces);
    return cmp->traces ? 0 : -1;
}

static unsigned long long count_lines(const char *text)
{
    unsigned long long n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

int fz_compare(fz_comparison *cmp, const fz_program *prog)
{
    int result = FZ_SAME;
    for (int b = 0; b < cmp->nbackends; b++) {
        if (fz_run(prog, cmp->backends[b], &cmp->traces[b]) < 0 || cmp->traces[b].out_of_memory) {
            cmp->failed_backend = cmp->backends[b];
            return FZ_SETUP_FAILED;
        }
        if (b > 0 && strcmp(fz_trace_text(&cmp->traces[0]), fz_trace_text(&cmp->traces[b])) != 0)
            result = FZ_DIFFERENT;
    }
    cmp->total_lines += count_lines(fz_trace_text(&cmp->traces[0]));
    if (strstr(fz_trace_text(&cmp->traces[0]), "top runaway:"))
        cmp->runaways++;
    return result;
}

void fz_comparison_print_difference(const fz_comparison *cmp, FILE *out)
{
    const char *ref = fz_trace_text(&cmp->traces[0]);
    for (int b = 1; b < cmp->nbackends; b++) {
        const char *la, *lb;
        size_t na, nb;
        int line = fz_trace_first_difference(ref, fz_trace_text(&cmp->traces[b]), &la, &na, &lb, &nb);
        if (!line)
            continue;
        fprintf(out, "---- %s differs from %s at trace line %d:\n", cmp->backends[b], cmp->backends[0], line);
        fprintf(out, "  %-10s %.*s\n", cmp->backends[0], (int)na, na || *la ? la : "(end of trace)");
        fprintf(out, "  %-10s %.*s\n", cmp->backends[b], (int)nb, nb || *lb ? lb : "(end of trace)");
    }
}

void fz_comparison_print_traces(const fz_comparison *cmp, FILE *out)
{
    for (int b = 0; b < cmp->nbackends; b++)
        fprintf(out, "---- trace on %s\n%s", cmp->backends[b], fz_trace_text(&cmp->traces[b]));
}

void fz_comparison_free(fz_comparison *cmp)
{
    for (int b = 0; b < cmp->nbackends; b++)
        fz_trace_free(&cmp->traces[b]);
    free(cmp->traces);
    cmp->traces = NULL;
}
