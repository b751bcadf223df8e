/* frame.c - framed messages with passed descriptors (see frame.h). */
#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t fr_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fr_send(int sock, int type, const void *payload, size_t len, const int *fds,
            int nfds)
{
	if (len > FR_MAX_PAYLOAD || nfds < 0 || nfds > FR_MAX_FDS) {
		errno = EINVAL;
		return -1;
	}
	unsigned char hdr[5] = {(unsigned char)(len >> 24),
	                        (unsigned char)(len >> 16),
	                        (unsigned char)(len >> 8), (unsigned char)len,
	                        (unsigned char)type};
	struct iovec iov[2] = {{hdr, sizeof(hdr)},
	                       {(void *)(uintptr_t)payload, len}};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * FR_MAX_FDS)];
	} cm;
	struct msghdr m;
	memset(&m, 0, sizeof(m));
	m.msg_iov = iov;
	m.msg_iovlen = len ? 2 : 1;
	if (nfds) {
		memset(&cm, 0, sizeof(cm));
		m.msg_control = cm.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	size_t total = sizeof(hdr) + len, sent = 0;
	while (sent < total) {
		ssize_t w = sendmsg(sock, &m, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		sent += (size_t)w;
		if (sent >= total)
			break;
		/* A short write: the rest without the descriptors. */
		m.msg_control = NULL;
		m.msg_controllen = 0;
		size_t skip = (size_t)w;
		for (size_t i = 0; i < m.msg_iovlen && skip; i++) {
			size_t k =
			        skip < iov[i].iov_len ? skip : iov[i].iov_len;
			iov[i].iov_base = (char *)iov[i].iov_base + k;
			iov[i].iov_len -= k;
			skip -= k;
		}
	}
	return 0;
}

/* Wait until sock is readable or the deadline passes. */
static int wait_in(int sock, int64_t deadline)
{
	for (;;) {
		int t = -1;
		if (deadline) {
			int64_t left = deadline - fr_now_ms();
			if (left <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			t = left > 1000 ? 1000 : (int)left;
		}
		struct pollfd p = {.fd = sock, .events = POLLIN};
		int n = poll(&p, 1, t);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n > 0)
			return 0;
	}
}

/* Exactly n bytes; the descriptors of the first read into fds. */
static int read_full(int sock, void *buf, size_t n, int *fds, int *nfds,
                     int64_t deadline)
{
	size_t got = 0;
	while (got < n) {
		if (wait_in(sock, deadline) < 0)
			return -1;
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int) * 8)];
		} cm;
		struct iovec iov = {(char *)buf + got, n - got};
		struct msghdr m;
		memset(&m, 0, sizeof(m));
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = cm.buf;
		m.msg_controllen = sizeof(cm.buf);
		ssize_t r = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			return -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c;
		     c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level != SOL_SOCKET ||
			    c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int *in = (int *)(void *)CMSG_DATA(c);
			for (size_t i = 0; i < k; i++) {
				if (fds && nfds && *nfds < FR_MAX_FDS)
					fds[(*nfds)++] = in[i];
				else
					close(in[i]);
			}
		}
		if (r == 0) {
			errno = EPIPE;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

int fr_recv(int sock, int *type, char **payload, size_t *len, int *fds,
            int *nfds, int64_t deadline)
{
	unsigned char hdr[5];
	if (nfds)
		*nfds = 0;
	*payload = NULL;
	if (read_full(sock, hdr, sizeof(hdr), fds, nfds, deadline) < 0)
		return -1;
	size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 |
	           (size_t)hdr[2] << 8 | hdr[3];
	if (n > FR_MAX_PAYLOAD) {
		errno = EPROTO;
		return -1;
	}
	char *p = malloc(n + 1);
	if (!p)
		return -1;
	if (n && read_full(sock, p, n, fds, nfds, deadline) < 0) {
		free(p);
		return -1;
	}
	p[n] = '\0';
	*type = hdr[4];
	*payload = p;
	*len = n;
	return 0;
}
