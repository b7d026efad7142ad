/*
 * runstat CMD...: runs a shell command and prints one line
 *   wall_s=1.234 cpu_s=2.345 maxrss_mib=12.3 status=0
 * on stderr, from wait4(2), so benchmark scripts get the peak memory of the
 * command and all its children without depending on GNU time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: runstat 'shell command'\n");
		return (2);
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid < 0) {
		perror("runstat: fork");
		return (1);
	}
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", argv[1], (char *)NULL);
		perror("runstat: exec /bin/sh");
		_exit(127);
	}
	int status = 0;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0) {
		perror("runstat: wait4");
		return (1);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	/* ru_maxrss is the largest single process among the waited-for tree. */
	fprintf(stderr, "wall_s=%.3f cpu_s=%.3f maxrss_mib=%.1f status=%d\n", wall, cpu,
	    (double)ru.ru_maxrss / 1024.0,
	    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return (WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}
