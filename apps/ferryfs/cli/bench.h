/* ferryfs bench (bench.c). */
#ifndef FERRYFS_CLI_BENCH_H
#define FERRYFS_CLI_BENCH_H

/* argv after "bench"; self: this program's path (the daemons are beside it
 * unless --daemons says). The exit code. */
int ferryfs_bench(int argc, char **argv, const char *self);

#endif
