/*
 * wire - a packet-level round trip, for when bench/relay's TCP-level model
 * is not enough: two TUN devices, one in this network namespace and one in
 * another, joined by this process, which delays every IP packet by RTT/2 in
 * each direction.  Both kernels' TCP stacks then see a real path with that
 * round trip: handshake, Nagle, delayed ACKs, slow start and windows behave
 * as on a network (the relay terminates TCP locally on both sides, so it
 * cannot show those).  Needs /dev/net/tun and network namespaces (no netem).
 *
 *   wire -a TUN_A -b TUN_B -n NETNS_PATH -r RTT_MS [-R READY_FILE]
 *
 * TUN_A must exist here and TUN_B in the namespace at NETNS_PATH (created
 * persistent by bench/netsim.sh, which also sets addresses and routes).
 * The queue per direction is bounded (drop-tail at 32 MiB) like a router's.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define PKT_MAX   65536
#define QUEUE_CAP (32u << 20)

struct pkt {
	struct pkt *next;
	int64_t due_ns;
	size_t len;
	unsigned char data[];
};

struct lane {
	int in, out;
	struct pkt *head, *tail;
	size_t queued;
	unsigned long long pkts, bytes, drops;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static int tun_open(const char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void lane_read(struct lane *l, int64_t half)
{
	unsigned char buf[PKT_MAX];
	for (int k = 0; k < 64; k++) {
		ssize_t n = read(l->in, buf, sizeof(buf));
		if (n <= 0)
			return;
		if (l->queued + (size_t)n > QUEUE_CAP) {
			l->drops++;
			continue;
		}
		struct pkt *p = malloc(sizeof(*p) + (size_t)n);
		if (!p) {
			l->drops++;
			continue;
		}
		p->next = NULL;
		p->due_ns = now_ns() + half;
		p->len = (size_t)n;
		memcpy(p->data, buf, (size_t)n);
		if (l->tail)
			l->tail->next = p;
		else
			l->head = p;
		l->tail = p;
		l->queued += (size_t)n;
		l->pkts++;
		l->bytes += (unsigned long long)n;
	}
}

static void lane_write(struct lane *l, int64_t now)
{
	while (l->head && l->head->due_ns <= now) {
		struct pkt *p = l->head;
		if (write(l->out, p->data, p->len) < 0 && errno == EAGAIN)
			return; /* retry on the next turn */
		l->head = p->next;
		if (!l->head)
			l->tail = NULL;
		l->queued -= p->len;
		free(p);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: wire -a TUN_A -b TUN_B -n NETNS_PATH -r RTT_MS "
	                "[-R READY_FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *a = NULL, *b = NULL, *ns = NULL, *ready = NULL;
	double rtt_ms = -1;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-a"))
			a = argv[i + 1];
		else if (!strcmp(argv[i], "-b"))
			b = argv[i + 1];
		else if (!strcmp(argv[i], "-n"))
			ns = argv[i + 1];
		else if (!strcmp(argv[i], "-R"))
			ready = argv[i + 1];
		else if (!strcmp(argv[i], "-r")) {
			char *end;
			rtt_ms = strtod(argv[i + 1], &end);
			if (*end)
				usage();
		} else
			usage();
	}
	if (!a || !b || !ns || rtt_ms < 0 || rtt_ms > 100000)
		usage();
	int64_t half = (int64_t)(rtt_ms * 500000.0 + 0.5);
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	int fa = tun_open(a);
	if (fa < 0) {
		fprintf(stderr, "wire: %s: %s\n", a, strerror(errno));
		return 1;
	}
	int nsfd = open(ns, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
		fprintf(stderr, "wire: setns %s: %s\n", ns, strerror(errno));
		return 1;
	}
	int fb = tun_open(b);
	if (fb < 0) {
		fprintf(stderr, "wire: %s (in %s): %s\n", b, ns,
		        strerror(errno));
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (ready) {
		FILE *f = fopen(ready, "w");
		if (f)
			fclose(f);
	}

	struct lane ab = {.in = fa, .out = fb}, ba = {.in = fb, .out = fa};
	while (!stop_flag) {
		int64_t now = now_ns();
		lane_write(&ab, now);
		lane_write(&ba, now);
		int64_t wake = INT64_MAX;
		if (ab.head)
			wake = ab.head->due_ns;
		if (ba.head && ba.head->due_ns < wake)
			wake = ba.head->due_ns;
		struct pollfd pfd[2] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}};
		struct timespec ts, *tsp = wake_timeout(wake, &ts);
		if (ppoll(pfd, 2, tsp, NULL) < 0 && errno != EINTR)
			return 1;
		if (pfd[0].revents & POLLIN)
			lane_read(&ab, half);
		if (pfd[1].revents & POLLIN)
			lane_read(&ba, half);
	}
	fprintf(stderr,
	        "wire: a->b %llu packets %llu bytes %llu dropped; "
	        "b->a %llu packets %llu bytes %llu dropped\n",
	        ab.pkts, ab.bytes, ab.drops, ba.pkts, ba.bytes, ba.drops);
	return 0;
}
