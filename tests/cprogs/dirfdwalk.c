/* Directory fds as tar and rm -r use them, step by step (one word per step):
 *   open PATH    the current dirfd: open(PATH, O_DIRECTORY)
 *   in NAME      the current dirfd: openat(current, NAME, O_DIRECTORY)
 *   cat REL      the first line of openat(current, REL), or the errno's name
 *   chmodfd MODE chmod("/proc/self/fd/N", MODE) of an O_PATH fd on the current
 *                directory (gnulib's fchmodat of a directory), then its mode
 *   rmdir NAME   unlinkat(current, NAME, AT_REMOVEDIR): "ok" or the errno's name */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void cat(int dir, const char *rel) {
    char buf[256];
    int fd = openat(dir, rel, O_RDONLY);
    if (fd < 0) { printf("%s\n", strerrorname_np(errno)); return; }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    buf[strcspn(buf, "\n")] = 0;
    printf("%s\n", buf);
}

static void chmodfd(int dir, const char *mode) {
    char link[64];
    struct stat st;
    int p = openat(dir, ".", O_PATH | O_DIRECTORY);
    snprintf(link, sizeof link, "/proc/self/fd/%d", p);
    if (p < 0 || chmod(link, (mode_t)strtol(mode, NULL, 8)) != 0 || fstat(p, &st) != 0)
        printf("%s\n", strerrorname_np(errno));
    else
        printf("%o\n", st.st_mode & 07777);
    close(p);
}

int main(int argc, char **argv) {
    int cur = AT_FDCWD;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *op = argv[i], *arg = argv[i + 1];
        if (strcmp(op, "open") == 0 || strcmp(op, "in") == 0) {
            cur = openat(strcmp(op, "open") == 0 ? AT_FDCWD : cur, arg, O_RDONLY | O_DIRECTORY);
            if (cur < 0) { printf("%s %s: %s\n", op, arg, strerrorname_np(errno)); return 1; }
        } else if (strcmp(op, "cat") == 0) {
            cat(cur, arg);
        } else if (strcmp(op, "chmodfd") == 0) {
            chmodfd(cur, arg);
        } else if (strcmp(op, "rmdir") == 0) {
            printf("%s\n", unlinkat(cur, arg, AT_REMOVEDIR) == 0 ? "ok" : strerrorname_np(errno));
        } else {
            fprintf(stderr, "dirfdwalk: unknown step %s\n", op);
            return 2;
        }
    }
    return 0;
}
