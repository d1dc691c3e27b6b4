/* ferry-bench: the benchmark CLI. One subcommand per scenario: server,
 * client, raw (the raw-socket floor), sweep (everything, interleaved, with
 * plots). */
#include <stdio.h>
#include <string.h>

#include "ferry/ferry.h"

int bench_server_main(int argc, char **argv);
int bench_client_main(int argc, char **argv);
int bench_raw_main(int argc, char **argv);
int bench_sweep_main(int argc, char **argv);

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: ferry-bench COMMAND [options]   (ferry %s)\n"
	        "  server  serve READ/WRITE/ECHO on one or more locators\n"
	        "  client  measure a transport: latency or throughput per size\n"
	        "  raw     raw UDP/TCP sockets, the baseline every row is compared with\n"
	        "  sweep   every transport this machine can run, interleaved with the\n"
	        "          raw baselines (and UCX when installed); CSV and plots\n"
	        "Each command takes --help.\n",
	        ferry_version());
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "server") == 0)
		return bench_server_main(argc - 1, argv + 1);
	if (strcmp(cmd, "client") == 0)
		return bench_client_main(argc - 1, argv + 1);
	if (strcmp(cmd, "raw") == 0)
		return bench_raw_main(argc - 1, argv + 1);
	if (strcmp(cmd, "sweep") == 0)
		return bench_sweep_main(argc - 1, argv + 1);
	fprintf(stderr, "ferry-bench: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
