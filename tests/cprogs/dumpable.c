/* prctl(PR_SET_DUMPABLE, 0), as sudo and ssh-agent do: the tracer must still read
 * the guest's memory (path translation), PR_GET_DUMPABLE must read 0, a forked
 * child inherits it, and an exec resets it to 1 (as the kernel does).
 * Usage: dumpable GUEST_PATH   (a path that exists only in the guest tree) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "after-exec") == 0) {
        printf("after-exec=%d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
        return 0;
    }
    if (argc != 2) return 2;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) { perror("PR_SET_DUMPABLE"); return 1; }
    printf("get=%d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    errno = 0;
    int bad = prctl(PR_SET_DUMPABLE, 7, 0, 0, 0);
    printf("bad=%d errno=%s\n", bad, errno == EINVAL ? "EINVAL" : strerror(errno));
    struct stat st;
    printf("stat=%s\n", stat(argv[1], &st) == 0 ? "ok" : strerror(errno));
    int fd = open(argv[1], O_RDONLY);
    char buf[64] = {0};
    if (fd < 0 || read(fd, buf, sizeof buf - 1) < 0) { printf("open=%s\n", strerror(errno)); return 1; }
    buf[strcspn(buf, "\n")] = 0;
    printf("read=%s\n", buf);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        printf("child=%d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
        fflush(stdout);
        execl("/proc/self/exe", argv[0], "after-exec", (char *)0);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("parent=%d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
