/* cmd_master.c - ferry master: list and stop the holders of --persist. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "persist.h"

static const char usage[] = "ferry master status | ferry master stop "
                            "[TARGET|--all]";

static const char help[] =
        "The holders that --persist starts: one process per target that\n"
        "keeps its SSH session open behind a unix socket only this user\n"
        "can reach ($XDG_RUNTIME_DIR/ferry, else ~/.local/state/ferry/run).\n"
        "\n"
        "  status         one line per holder: target, pid, seconds idle,\n"
        "                 commands served, its --persist seconds, and\n"
        "                 whether a command runs (with how many wait)\n"
        "  stop TARGET    stop the holder of TARGET ([USER@]HOST, or\n"
        "                 USER@HOST:PORT as status shows it) once its\n"
        "                 running command is done; waiting ones then\n"
        "                 connect directly\n"
        "  stop --all     stop every holder\n"
        "\n"
        "A socket whose holder is gone is removed.  Exit: 0 done, 1 no\n"
        "holder matched TARGET, 2 usage.\n";

typedef struct info {
	char target[512], typed[512];
	int pid, persist, busy;
	double idle;
	unsigned long long served;
	unsigned long queued;
} info;

/* Ask the holder at sock; 0 with *in, -1 when it does not answer. */
static int ask(const char *sock, int type, info *in)
{
	int fd = cli_persist_dial(sock);
	if (fd < 0)
		return -1;
	int t = 0, rc = -1;
	char *p = NULL;
	size_t len;
	if (fr_send(fd, type, NULL, 0, NULL, 0) == 0 &&
	    fr_recv(fd, &t, &p, &len, NULL, NULL, fr_now_ms() + 3000) == 0 &&
	    t == FR_INFO) {
		memset(in, 0, sizeof(*in));
		char *f[8] = {0};
		char *save = NULL, *tok = strtok_r(p, "\t", &save);
		for (int i = 0; tok && i < 8; i++) {
			f[i] = tok;
			tok = strtok_r(NULL, "\t", &save);
		}
		if (f[0] && f[1]) {
			snprintf(in->target, sizeof(in->target), "%s", f[0]);
			in->pid = (int)strtol(f[1], NULL, 10);
			in->idle = f[2] ? strtod(f[2], NULL) : 0;
			in->served = f[3] ? strtoull(f[3], NULL, 10) : 0;
			in->persist = f[4] ? (int)strtol(f[4], NULL, 10) : 0;
			in->busy = f[5] ? (int)strtol(f[5], NULL, 10) : 0;
			in->queued = f[6] ? strtoul(f[6], NULL, 10) : 0;
			snprintf(in->typed, sizeof(in->typed), "%s",
			         f[7] ? f[7] : "");
			rc = 0;
		}
	}
	free(p);
	close(fd);
	return rc;
}

static int matches(const info *in, const char *target)
{
	if (!strcmp(target, in->target) || !strcmp(target, in->typed))
		return 1;
	/* user@host: the resolved user with the host as typed */
	const char *at = strchr(in->target, '@');
	size_t ul = at ? (size_t)(at - in->target) : 0;
	return at && !strncmp(target, in->target, ul + 1) &&
	       !strcmp(target + ul + 1, strchr(in->typed, '@')
	                                        ? strchr(in->typed, '@') + 1
	                                        : in->typed);
}

/* Wait (5 s at most) for pid to exit. */
static int wait_gone(int pid)
{
	int64_t deadline = fr_now_ms() + 5000;
	while (kill(pid, 0) == 0 || errno != ESRCH) {
		if (fr_now_ms() > deadline)
			return -1;
		usleep(10000);
	}
	return 0;
}

int cmd_master(int argc, char **argv)
{
	if (argc >= 2 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: %s\n\n%s", usage, help);
		return FERRY_EXIT_OK;
	}
	if (argc < 2)
		return cli_usage_error(usage, "expected status or stop");
	int stop = !strcmp(argv[1], "stop");
	if (!stop && strcmp(argv[1], "status"))
		return cli_usage_error(usage, "unknown master command '%s'",
		                       argv[1]);
	if ((stop && argc != 3) || (!stop && argc != 2))
		return cli_usage_error(usage, stop ? "expected TARGET or --all"
		                                   : "status takes no operand");
	const char *target = stop ? argv[2] : NULL;
	int all = target && !strcmp(target, "--all");
	char dir[512], why[FERRY_ERRMSG_SIZE];
	if (cli_persist_dir(dir, sizeof(dir), why, sizeof(why)) < 0) {
		cli_error("%s", why);
		return FERRY_EXIT_ERROR;
	}
	DIR *d = opendir(dir);
	if (!d) {
		cli_error("%s: %s", dir, strerror(errno));
		return FERRY_EXIT_ERROR;
	}
	int found = 0, failed = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l != CLI_KEY_LEN + 5 ||
		    strcmp(e->d_name + CLI_KEY_LEN, ".sock"))
			continue;
		char key[CLI_KEY_LEN + 1], sock[600], lock[600];
		memcpy(key, e->d_name, CLI_KEY_LEN);
		key[CLI_KEY_LEN] = '\0';
		if (cli_persist_path(sock, sizeof(sock), dir, key, ".sock") <
		            0 ||
		    cli_persist_path(lock, sizeof(lock), dir, key, ".lock") < 0)
			continue;
		info in;
		if (ask(sock, FR_STATUS, &in) < 0) {
			/* No answer and no lock: the holder is gone. */
			if (!cli_persist_locked(lock)) {
				unlink(sock);
				unlink(lock);
			}
			continue;
		}
		if (!stop) {
			if (!found)
				printf("%-32s %8s %8s %7s %8s  %s\n", "TARGET",
				       "PID", "IDLE_S", "SERVED", "PERSIST",
				       "STATE");
			found++;
			char state[64];
			if (in.busy)
				snprintf(state, sizeof(state),
				         "running (%lu waiting)", in.queued);
			else
				snprintf(state, sizeof(state), "idle");
			printf("%-32s %8d %8.1f %7llu %8d  %s\n", in.target,
			       in.pid, in.idle, in.served, in.persist, state);
			continue;
		}
		if (!all && !matches(&in, target))
			continue;
		found++;
		if (ask(sock, FR_STOP, &in) < 0 || wait_gone(in.pid) < 0) {
			cli_error(
			        "the holder of %s (pid %d) did not stop in 5 s",
			        in.target, in.pid);
			failed = 1;
			continue;
		}
		printf("stopped the holder of %s (pid %d)\n", in.target,
		       in.pid);
	}
	closedir(d);
	if (stop && !found && !all) {
		cli_error("no holder for %s", target);
		return FERRY_EXIT_ERROR;
	}
	return failed ? FERRY_EXIT_ERROR : FERRY_EXIT_OK;
}
