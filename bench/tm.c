/*
 * tm - time one command: wall clock from fork to exit, and its peak RSS.
 *
 *   tm [-i IN] [-o OUT] [-e ERR] -- COMMAND [ARG...]
 *
 * stdin, stdout and stderr of COMMAND default to /dev/null.  Prints
 * "MS MAXRSS_KB STATUS" on stdout; STATUS is the exit status, or 128+signal.
 * Exits 0 whenever COMMAND could be run.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int open_or_die(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	return fd;
}

int main(int argc, char **argv)
{
	const char *in = "/dev/null", *out = "/dev/null", *err = "/dev/null";
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			break;
		if (!strcmp(argv[i], "-i"))
			in = argv[++i];
		else if (!strcmp(argv[i], "-o"))
			out = argv[++i];
		else if (!strcmp(argv[i], "-e"))
			err = argv[++i];
		else
			break;
	}
	if (i >= argc) {
		fprintf(stderr,
		        "usage: tm [-i IN] [-o OUT] [-e ERR] -- CMD...\n");
		return 2;
	}
	int fi = open_or_die(in, O_RDONLY);
	int fo = open_or_die(out, O_WRONLY | O_CREAT | O_TRUNC);
	int fe = open_or_die(err, O_WRONLY | O_CREAT | O_TRUNC);
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		dup2(fi, 0);
		dup2(fo, 1);
		dup2(fe, 2);
		execvp(argv[i], argv + i);
		perror(argv[i]);
		_exit(127);
	}
	int status;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) != pid) {
		perror("wait4");
		return 2;
	}
	double ms = now_ms() - t0;
	int code = WIFEXITED(status) ? WEXITSTATUS(status)
	                             : 128 + WTERMSIG(status);
	printf("%.3f %ld %d\n", ms, ru.ru_maxrss, code);
	return 0;
}
