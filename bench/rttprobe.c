/*
 * rttprobe - check what a TCP path costs (used on bench/relay.c).
 *
 *   rttprobe serve PORT_FILE [ADDR]   a server that sends one byte on
 *                                 accept (like sshd's banner), then echoes;
 *                                 runs until killed
 *   rttprobe client PORT [N [ADDR]]   N times: connect, wait for the
 *                                 server's first byte, then 5 one-byte
 *                                 echoes; prints medians (ms) of connect()
 *                                 return, connect to first byte, one echo
 *   rttprobe banner PORT [N [ADDR]]   N times: connect and wait for the
 *                                 first byte (sshd's "SSH-2.0-"), close
 * ADDR is an IPv4 address, default 127.0.0.1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct in_addr addr;

static int serve(const char *port_file)
{
	struct sockaddr_in sa;
	int lfd = listen_tcp(addr, 0, 64, &sa, "rttprobe: listen");
	if (lfd < 0)
		return 1;
	FILE *f = fopen(port_file, "w");
	if (!f || fprintf(f, "%d\n", ntohs(sa.sin_port)) < 0 ||
	    fclose(f) != 0) {
		perror("rttprobe: port file");
		return 1;
	}
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (fork() == 0) {
			char c = 'B';
			nodelay(fd);
			if (write(fd, &c, 1) != 1)
				_exit(1);
			while (read(fd, &c, 1) == 1)
				if (write(fd, &c, 1) != 1)
					break;
			_exit(0);
		}
		close(fd);
	}
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int client(int port, int n, int echo)
{
	double *conn = calloc((size_t)n, sizeof(double));
	double *first = calloc((size_t)n, sizeof(double));
	double *rt = calloc((size_t)n * 5, sizeof(double));
	if (!conn || !first || !rt)
		return 1;
	int nrt = 0;
	for (int i = 0; i < n; i++) {
		struct sockaddr_in sa = {0};
		sa.sin_family = AF_INET;
		sa.sin_port = htons((uint16_t)port);
		sa.sin_addr = addr;
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		double t0 = now_ms();
		if (fd < 0 ||
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			perror("rttprobe: connect");
			return 1;
		}
		conn[i] = now_ms() - t0;
		nodelay(fd);
		char c;
		if (read(fd, &c, 1) != 1) {
			fprintf(stderr, "rttprobe: no first byte\n");
			return 1;
		}
		first[i] = now_ms() - t0;
		for (int k = 0; echo && k < 5; k++) {
			double t1 = now_ms();
			c = 'x';
			if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1) {
				fprintf(stderr, "rttprobe: echo failed\n");
				return 1;
			}
			rt[nrt++] = now_ms() - t1;
		}
		close(fd);
	}
	printf("connect_ms %.3f first_byte_ms %.3f", median(conn, n),
	       median(first, n));
	if (echo)
		printf(" echo_ms %.3f", median(rt, nrt));
	printf(" runs %d\n", n);
	free(conn);
	free(first);
	free(rt);
	return 0;
}

int main(int argc, char **argv)
{
	const char *a = "127.0.0.1";
	if (argc >= 4 && !strcmp(argv[1], "serve"))
		a = argv[3];
	else if (argc >= 5)
		a = argv[4];
	if (inet_pton(AF_INET, a, &addr) != 1) {
		fprintf(stderr, "rttprobe: bad address %s\n", a);
		return 2;
	}
	if (argc >= 3 && !strcmp(argv[1], "serve"))
		return serve(argv[2]);
	if (argc >= 3 &&
	    (!strcmp(argv[1], "client") || !strcmp(argv[1], "banner"))) {
		int port = (int)strtol(argv[2], NULL, 10);
		int n = argc >= 4 ? (int)strtol(argv[3], NULL, 10) : 10;
		if (port <= 0 || n <= 0 || n > 10000)
			return 2;
		return client(port, n, !strcmp(argv[1], "client"));
	}
	fprintf(stderr, "usage: rttprobe serve PORT_FILE [ADDR] | "
	                "client PORT [N [ADDR]] | banner PORT [N [ADDR]]\n");
	return 2;
}
