/* The larger stream workloads of ae-stream-bench (bench/stream/scale.c):
 * bulk transfer, many connections, commands. Each returns main()'s status. */
#ifndef AE_BENCH_STREAM_SCALE_H
#define AE_BENCH_STREAM_SCALE_H

long bench_allocs(void); /* allocations so far (count.h's counter) */

/* ae-stream-bench BACKEND bulk plain|raw|stream MIB */
int run_bulk(const char *backend, const char *impl, long mib);
/* ae-stream-bench BACKEND conns io|stream N REQUESTS RTIMEOUT */
int run_conns(const char *backend, const char *impl, long n, long requests, double rtimeout);
/* ae-stream-bench BACKEND cmd true|print RUNS [plain|one|par] */
int run_cmd(const char *backend, const char *what, long runs, const char *only);

#endif
