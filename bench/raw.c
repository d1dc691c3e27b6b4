/* ferry-bench raw: the raw-socket baseline every ferry transport row is
 * compared with. Plain UDP datagrams or one plain TCP connection at the same
 * sizes, cores and polling modes as the ferry client, against a server that
 * answers every mode and op for any number of consecutive clients.
 * The wire protocol and the map of the raw_*.c files are in raw.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "raw.h"

static void raw_on_signal(int sig)
{
	(void)sig;
	bench_raw_stop = 1;
}

/* HOST:PORT, IPv4. An empty host or "*" means any address when listening. */
static int raw_parse_addr(const char *s, bool passive, struct sockaddr_in *sa)
{
	const char *colon = strrchr(s, ':');
	char host[256];
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		goto bad;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || errno != 0 || port > 65535)
		goto bad;
	bool any = host[0] == '\0' || strcmp(host, "*") == 0;
	struct addrinfo hints = {.ai_family = AF_INET,
	                         .ai_flags = passive ? AI_PASSIVE : 0};
	struct addrinfo *res;
	int rc = getaddrinfo(any ? NULL : host, NULL, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "ferry-bench raw: %s: %s\n", s, gai_strerror(rc));
		return -1;
	}
	memcpy(sa, res->ai_addr, sizeof(*sa));
	sa->sin_port = htons((uint16_t)port);
	freeaddrinfo(res);
	return 0;
bad:
	fprintf(stderr, "ferry-bench raw: bad address '%s' (want HOST:PORT)\n", s);
	return -1;
}

static int raw_server(const struct raw_opts *o)
{
	/* No SA_RESTART: a blocked recv or accept returns EINTR and we leave. */
	struct sigaction sa = {.sa_handler = raw_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* a client killed mid-reply must not kill us */

	int type = o->tcp ? SOCK_STREAM : SOCK_DGRAM | (o->spin ? SOCK_NONBLOCK : 0);
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("ferry-bench raw: socket");
		return 1;
	}
	int one = 1;
	if (o->tcp)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	else
		bench_raw_sockbufs(fd);
	struct sockaddr_in a = o->addr;
	socklen_t alen = sizeof(a);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    (o->tcp && listen(fd, 16) != 0) ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
		fprintf(stderr, "ferry-bench raw: %s: %s\n", o->listen, strerror(errno));
		close(fd);
		return 1;
	}
	printf("port=%u\n", ntohs(a.sin_port));
	fflush(stdout);
	int rc = o->tcp ? bench_raw_tcp_server(fd, o->spin)
	                : bench_raw_udp_server(fd, o->spin);
	close(fd);
	return rc;
}

/* Options -----------------------------------------------------------------------------*/

static void raw_usage(FILE *f)
{
	fprintf(f,
	        "usage: ferry-bench raw --proto udp|tcp --listen HOST:PORT\n"
	        "                       [--poll spin|block] [--cpu N]\n"
	        "       ferry-bench raw --proto udp|tcp --connect HOST:PORT [options]\n"
	        "The raw-socket baseline. --listen serves every mode and op for any\n"
	        "number of consecutive clients until SIGTERM/SIGINT; PORT 0 picks a\n"
	        "port, printed on stdout as port=N. --connect measures:\n"
	        "  --mode latency|throughput  (latency)\n"
	        "  --op read|write|echo       latency calls (read): read = 8-byte\n"
	        "                             request, SIZE-byte reply; write = the\n"
	        "                             reverse; echo = SIZE both ways.\n"
	        "                             Throughput streams client to server.\n"
	        "  --sizes LIST               (64,1k,4k,64k,1m; udp up to 65507)\n"
	        "  --duration D, --warmup D   per size (3s, 0.1s)\n"
	        "  --poll spin|block          busy-polled non-blocking sockets, or\n"
	        "                             blocking calls (spin)\n"
	        "  --cpu N                    pin this process to CPU N\n"
	        "  --server-pid PID           server CPU from /proc/PID/schedstat\n"
	        "  --json FILE, --csv FILE    results, '-' = stdout (JSON on stdout)\n"
	        "A udp call with no reply in 200 ms counts as an error. Throughput is\n"
	        "the bytes the server received over the client's send time; for udp,\n"
	        "errors are the datagrams it did not receive.\n");
}

/* -1 = go on, else the exit status. */
static int raw_parse(int argc, char **argv, struct raw_opts *o)
{
	static const struct option opts[] = {
	        {"proto", required_argument, NULL, 'p'},
	        {"listen", required_argument, NULL, 'l'},
	        {"connect", required_argument, NULL, 'c'},
	        {"mode", required_argument, NULL, 'm'},
	        {"op", required_argument, NULL, 'o'},
	        {"sizes", required_argument, NULL, 's'},
	        {"duration", required_argument, NULL, 'd'},
	        {"warmup", required_argument, NULL, 'w'},
	        {"poll", required_argument, NULL, 'P'},
	        {"cpu", required_argument, NULL, 'C'},
	        {"server-pid", required_argument, NULL, 'S'},
	        {"json", required_argument, NULL, 'j'},
	        {"csv", required_argument, NULL, 'v'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	*o = (struct raw_opts){.op = BENCH_OP_READ,
	                       .cpu = -1,
	                       .spin = true,
	                       .duration = 3,
	                       .warmup = 0.1};
	o->nsizes = bench_parse_sizes("64,1k,4k,64k,1m", o->sizes, BENCH_SIZES_MAX);
	const char *proto = NULL;
	char *end;
	long v;
	int c;
	optind = 0; /* glibc and musl: start over whatever main parsed before */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			proto = optarg;
			break;
		case 'l':
			o->listen = optarg;
			break;
		case 'c':
			o->connect = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "latency") != 0 &&
			    strcmp(optarg, "throughput") != 0)
				goto bad;
			o->throughput = strcmp(optarg, "throughput") == 0;
			break;
		case 'o':
			if ((o->op = bench_parse_op(optarg)) < 0 ||
			    o->op == BENCH_OP_FILEREAD)
				goto bad; /* fileread needs a ferry server */
			break;
		case 's':
			if ((o->nsizes = bench_parse_sizes(optarg, o->sizes,
			                                   BENCH_SIZES_MAX)) < 0)
				return 2;
			o->sizes_given = true;
			break;
		case 'd':
			if ((o->duration = bench_parse_duration(optarg)) <= 0)
				goto bad;
			break;
		case 'w':
			if ((o->warmup = bench_parse_duration(optarg)) < 0)
				goto bad;
			break;
		case 'P':
			if (strcmp(optarg, "spin") != 0 && strcmp(optarg, "block") != 0)
				goto bad;
			o->spin = strcmp(optarg, "spin") == 0;
			break;
		case 'C':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || errno != 0 || v < -1 ||
			    v > 65535)
				goto bad;
			o->cpu = (int)v;
			break;
		case 'S':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || errno != 0 || v <= 0 ||
			    v > 0x3fffffff)
				goto bad;
			o->server_pid = (pid_t)v;
			break;
		case 'j':
			o->json = optarg;
			break;
		case 'v':
			o->csv = optarg;
			break;
		case 'h':
			raw_usage(stdout);
			return 0;
		default:
			raw_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ferry-bench raw: unexpected argument '%s'\n",
		        argv[optind]);
		return 2;
	}
	if (proto == NULL || (strcmp(proto, "udp") != 0 && strcmp(proto, "tcp") != 0)) {
		fprintf(stderr, "ferry-bench raw: --proto udp|tcp is required\n");
		return 2;
	}
	o->tcp = strcmp(proto, "tcp") == 0;
	if ((o->listen == NULL) == (o->connect == NULL)) {
		fprintf(stderr,
		        "ferry-bench raw: give exactly one of --listen and --connect\n");
		return 2;
	}
	if (raw_parse_addr(o->listen ? o->listen : o->connect, o->listen != NULL,
	                   &o->addr) != 0)
		return 2;
	if (o->listen != NULL)
		return -1;

	/* Refuse what the protocol cannot carry before measuring anything. The
	 * default list is trimmed for udp instead: it is not the user's mistake. */
	int n = 0;
	uint64_t max = o->tcp ? RAW_TCP_MAX_BYTES : RAW_UDP_MAX_BYTES;
	for (int i = 0; i < o->nsizes; i++) {
		uint64_t s = o->sizes[i];
		if (o->throughput && s == 0) {
			fprintf(stderr,
			        "ferry-bench raw: throughput needs sizes above 0\n");
			return 2;
		}
		/* an empty TCP reply cannot be waited for: the next request would
		 * overtake it */
		if (o->tcp && !o->throughput && o->op != BENCH_OP_WRITE && s == 0) {
			fprintf(stderr, "ferry-bench raw: tcp %s needs sizes above 0\n",
			        bench_op_name(o->op));
			return 2;
		}
		if (s <= max) {
			o->sizes[n++] = s;
			continue;
		}
		if (o->tcp || o->sizes_given) {
			fprintf(stderr,
			        "ferry-bench raw: size %llu: raw-%s carries at most "
			        "%llu%s\n",
			        (unsigned long long)s, proto, (unsigned long long)max,
			        o->tcp ? "" : " (one datagram per message)");
			return 2;
		}
		fprintf(stderr,
		        "ferry-bench raw: skipping size %llu: over one udp datagram\n",
		        (unsigned long long)s);
	}
	o->nsizes = n;
	return -1;
bad:
	fprintf(stderr, "ferry-bench raw: bad value '%s'\n", optarg);
	raw_usage(stderr);
	return 2;
}

int bench_raw_main(int argc, char **argv)
{
	struct raw_opts o;
	int rc = raw_parse(argc, argv, &o);
	if (rc >= 0)
		return rc;
	if ((rc = bench_pin(o.cpu)) != 0) {
		fprintf(stderr, "ferry-bench raw: cannot pin to CPU %d: %s\n", o.cpu,
		        strerror(-rc));
		return 1;
	}
	return o.listen != NULL ? raw_server(&o) : bench_raw_client(&o);
}
