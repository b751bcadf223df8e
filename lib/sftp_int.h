/* sftp_int.h - internals of the SFTP client shared by lib/sftp*.c only. */
#ifndef FERRY_SFTP_INT_H
#define FERRY_SFTP_INT_H

#include <string.h>

#include "buf.h"
#include "sftp.h"

/* req.flags */
#define REQF_HANDLE 0x01u /* on an open handle: may pass a waiting OPEN */
#define REQF_SLOT   0x02u /* OPEN/OPENDIR: takes a handle slot */
#define REQF_CLOSE  0x04u /* CLOSE: frees a handle slot when answered */
#define REQF_CREATE 0x08u /* FAILURE: find out whether the path exists */
#define REQF_ORPHAN 0x10u /* cancelled: drop the reply */
#define REQF_GEN    0x20u /* a generator (upload writes), not a request */

/* A generator sits in the handle queue and produces WRITEs while the
 * window allows (ferry__sftp__send_write); emit returns 1 when it sent
 * one, 0 when the window is full, 2 when it has nothing more to send (it
 * is then removed).  fail is called instead when the client dies or is
 * cancelled before it finished. */
typedef struct ferry__sftp_gen {
	int (*emit)(ferry__sftp *sf, void *ctx, uint64_t gen);
	void (*fail)(void *ctx, int code, const char *msg);
	void *ctx;
} ferry__sftp_gen;

typedef struct ferry__sftp_req ferry__sftp_req;
struct ferry__sftp_req {
	ferry__sftp_req *next;          /* queue */
	ferry__sftp_req *hnext;         /* in-flight table chain */
	ferry__sftp_req *iprev, *inext; /* in flight, in the order sent */
	uint64_t seq, gen;
	uint32_t id;
	uint8_t type, ext_kind, flags;
	uint32_t io_len; /* READ: bytes asked; WRITE: bytes carried */
	uint32_t subj_off, subj_len; /* REQF_CREATE: the path in pkt */
	uint32_t hkey;               /* handle requests: its hpath entry */
	size_t cost;                 /* window bytes */
	int64_t sent_us;             /* when it went to the wire buffer */
	ferry__sftp_cb cb;
	void *ctx;
	ferry__sftp_gen gen_fn; /* REQF_GEN */
	size_t pkt_len;
	uint8_t pkt[];
};

typedef struct ferry__sftp_queue {
	ferry__sftp_req *head, *tail;
	size_t count;
} ferry__sftp_queue;

enum { SFTP_NEW = 0, SFTP_INIT_SENT, SFTP_READY };

/* An open handle and the path it was opened on: what a request on the
 * handle is about, for the I/O deadline's message. */
typedef struct ferry__sftp_hpath {
	ferry__sftp_handle h;
	uint32_t key;  /* 0: a free slot */
	uint32_t next; /* its bucket's chain, or the free list: slot + 1 */
	char *path;
} ferry__sftp_hpath;

struct ferry__sftp {
	ferry__sftp_transport *t;
	ferry_session *session;
	ferry__sftp_opts opts;
	int state;
	int dead; /* 0 or the FERRY_E* it died of */
	char errmsg[FERRY_ERRMSG_SIZE];

	uint32_t version;
	uint64_t init_gen;
	unsigned ext_advertised, ext; /* ext: advertised minus ignored */
	int kicked;         /* a request queued since the step began */
	int symlink_order;  /* FERRY__SYMLINK_*: known, probed or failed */
	int symlink_rename; /* FERRY__SYMLINK_RENAME_*, 0: unknown */
	int readlink_form;  /* FERRY__READLINK_*, 0: unknown */
	char symlink_msg[FERRY_ERRMSG_SIZE]; /* why the probe failed */
	int limits_pending;             /* the speculative limits request */
	ferry__sftp_limits_info limits; /* in force */
	size_t window;
	/* The default window follows the path (adapt_window in sftp.c);
	 * opts.window_bytes fixes it instead. */
	int window_fixed;
	int64_t min_rtt_us;    /* 0: no sample yet */
	int64_t rate_start_us; /* the delivery-rate sample began */
	size_t rate_bytes;     /* window bytes answered since */
	unsigned slots_max, slots_used;

	uint32_t next_id;
	uint64_t next_seq;
	ferry__sftp_queue qpath, qhandle;
	size_t queued_bytes;
	ferry__sftp_req **table; /* in flight, by id */
	size_t table_size, table_count;
	ferry__sftp_req *if_head, *if_tail; /* in flight, in send order */
	size_t inflight_bytes;

	ferry_buf out, in;
	int first_framed; /* the first packet (VERSION) was framed */

	uint64_t own_rt;
	uint64_t *rt;      /* own_rt, or the session's counter */
	int in_cb;         /* depth of callbacks running */
	uint64_t cur_gen;  /* generation of the reply being delivered */
	uint64_t base_gen; /* ferry__sftp_gen_base, else 0 */
	int cancelling;    /* submissions fail with this meanwhile */
	size_t jobs;       /* building blocks running (for pending) */
	/* Delta uploads that may hold their temp's handle while their base's
	 * OPEN is still to come (lib/sftp_blocks.c): kept below slots_max so
	 * that they cannot take every slot and wait for each other; the
	 * uploads beyond wait in a list (upload jobs) until one is done. */
	unsigned delta_waiting;
	void *delta_first, *delta_last;

	ferry__sftp_stats stats;
	int blocked_window, blocked_slot; /* to count each wait once */

	/* The I/O deadline: requests outstanding (or INIT) and no byte moved
	 * either way for io_timeout ms kill the client (0: none). */
	int io_timeout;
	int64_t progress_ms;   /* when a byte last moved, or work began */
	ferry__sftp_hpath *hp; /* open handles' slots (sftp.c) */
	size_t hp_n, hp_cap;   /* in use, made */
	uint32_t *hp_bucket;   /* slot + 1 of each chain's first, 0: none */
	size_t hp_nbucket;
	uint32_t hp_free, hp_gen;

	uint8_t garbage[64]; /* first bytes when INIT read garbage */
	size_t garbage_len;
};

/* A request being encoded (lib/sftp_enc.c). */
typedef struct ferry__sftp_enc {
	ferry_buf b;
	uint32_t id;
	uint32_t subj_off, subj_len; /* REQF_CREATE: the path in b */
} ferry__sftp_enc;

/* Turn the encoded packet into a queued request (nothing queued when
 * e->b holds an encoder's error).  Frees e's buffer.  0 or FERRY_E*. */
int ferry__sftp__submit(ferry__sftp *sf, ferry__sftp_enc *e, uint8_t type,
                        int ext_kind, unsigned flags, size_t reply_cost,
                        uint32_t read_len, ferry__sftp_cb cb, void *ctx);

/* SYMLINK with the two paths in this order on the wire, and no check of
 * which exists when it fails (sftp_probe.c). */
int ferry__sftp__symlink_raw(ferry__sftp *sf, const char *first,
                             const char *second, ferry__sftp_cb cb, void *ctx);

/* The generation a request submitted now gets. */
uint64_t ferry__sftp__next_gen(const ferry__sftp *sf);

/* Send a WRITE now, filling its data with fill() straight into the
 * outgoing buffer.  1 sent; 0 the window is full (nothing done); or the
 * error of fill / FERRY_ENOMEM (nothing sent). */
int ferry__sftp__send_write(ferry__sftp *sf, uint64_t gen,
                            const ferry__sftp_handle *h, uint64_t off,
                            size_t len,
                            int (*fill)(void *fctx, uint8_t *dst, size_t n,
                                        uint64_t off),
                            void *fctx, ferry__sftp_cb cb, void *ctx);

/* Queue a generator on the handle queue (after everything submitted so
 * far).  0 or FERRY_ENOMEM / the death error. */
int ferry__sftp__add_gen(ferry__sftp *sf, const ferry__sftp_gen *g);

int64_t ferry__sftp__now(void);

/* Copy text, cut to fit (size > 0). */
static inline void ferry__sftp__textcpy(char *dst, size_t size, const char *src)
{
	size_t n = 0;
	while (n + 1 < size && src[n])
		n++;
	memmove(dst, src, n);
	dst[n] = '\0';
}

/* The client is unusable from now on: every callback is called with code
 * and the text (fmt NULL: keep the text already set). */
void ferry__sftp__die(ferry__sftp *sf, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#endif
