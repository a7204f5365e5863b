/* A 32-bit x86 program for tests/engine/test_i386.py: each argument is one action,
 * its output one line per result, the same natively and under ocirun proot. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/auxv.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void show_stat(const char *how, const char *path, int r, struct stat *st) {
    if (r != 0)
        printf("%s %s: %s\n", how, path, strerrorname_np(errno));
    else
        printf("%s %s: mode=%o uid=%d size=%lld\n", how, path, (unsigned)st->st_mode, (int)st->st_uid,
               (long long)st->st_size);
}

/* the kernel's struct stat64 calls themselves (glibc's stat() makes statx) */
static void stat64_call(const char *how, const char *path) {
    struct stat64 st;
    long r;
    if (!strcmp(how, "stat64")) r = syscall(SYS_stat64, path, &st);
    else if (!strcmp(how, "lstat64")) r = syscall(SYS_lstat64, path, &st);
    else if (!strcmp(how, "fstatat64")) r = syscall(SYS_fstatat64, AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW);
    else {
        int fd = open(path, O_RDONLY | O_PATH);
        r = syscall(SYS_fstat64, fd, &st);
        close(fd);
    }
    if (r != 0)
        printf("%s %s: %s\n", how, path, strerrorname_np(errno));
    else
        printf("%s %s: mode=%o uid=%d gid=%d size=%lld nlink=%d ino=%s\n", how, path, (unsigned)st.st_mode,
               (int)st.st_uid, (int)st.st_gid, (long long)st.st_size, (int)st.st_nlink,
               st.st_ino == (unsigned long long)st.__st_ino || st.st_ino > 0xffffffffULL ? "ok" : "bad");
}

static void unix_socket(const char *path, int direct) {
    struct sockaddr_un a = {.sun_family = AF_UNIX}, b;
    socklen_t len = sizeof b;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
    int r = direct ? syscall(SYS_bind, s, &a, sizeof a) : bind(s, (struct sockaddr *)&a, sizeof a);
    printf("bind%s %s: %s\n", direct ? "(direct)" : "", path, r ? strerrorname_np(errno) : "ok");
    listen(s, 1);
    r = direct ? syscall(SYS_connect, c, &a, sizeof a) : connect(c, (struct sockaddr *)&a, sizeof a);
    printf("connect: %s\n", r ? strerrorname_np(errno) : "ok");
    memset(&b, 0, sizeof b);
    getsockname(s, (struct sockaddr *)&b, &len);
    printf("getsockname: %s\n", b.sun_path);
    len = sizeof b;
    memset(&b, 0, sizeof b);
    getpeername(c, (struct sockaddr *)&b, &len);
    printf("getpeername: %s\n", b.sun_path);
    close(c);
    close(s);
    unlink(path);
}

static void tcp_port(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)}, b;
    socklen_t len = sizeof b;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("tcp bind: %s\n", strerrorname_np(errno));
        return;
    }
    getsockname(s, (struct sockaddr *)&b, &len);
    printf("tcp getsockname: %d\n", ntohs(b.sin_port));
    close(s);
}

int main(int argc, char **argv) {
    char buf[4096];
    struct stat st;
    printf("pointer=%d\n", (int)sizeof(void *));
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *val = strchr(arg, '=');
        if (val) *val++ = '\0';
        if (!strcmp(arg, "cwd")) {
            printf("cwd: %s\n", getcwd(buf, sizeof buf) ? buf : strerrorname_np(errno));
        } else if (!strcmp(arg, "stat")) {
            show_stat("stat", val, stat(val, &st), &st);
        } else if (!strcmp(arg, "lstat")) {
            show_stat("lstat", val, lstat(val, &st), &st);
        } else if (!strcmp(arg, "readlink")) {
            ssize_t n = readlink(val, buf, sizeof buf - 1);
            printf("readlink %s: %s\n", val, n < 0 ? strerrorname_np(errno) : (buf[n] = 0, buf));
        } else if (!strcmp(arg, "cat")) {
            int fd = open(val, O_RDONLY);
            ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
            printf("cat %s: %s", val, n < 0 ? strerrorname_np(errno) : (buf[n] = 0, buf));
            if (n < 0) printf("\n");
            if (fd >= 0) close(fd);
        } else if (!strcmp(arg, "mkdir")) {
            int r = mkdir(val, 0755);
            printf("mkdir %s: %s\n", val, r ? strerrorname_np(errno) : "ok");
        } else if (!strcmp(arg, "chown")) {
            int r = chown(val, 1234, 5678);
            printf("chown %s: %s\n", val, r ? strerrorname_np(errno) : "ok");
        } else if (!strncmp(arg, "stat64", 6) || !strncmp(arg, "lstat64", 7) || !strncmp(arg, "fstat", 5)) {
            stat64_call(arg, val);
        } else if (!strcmp(arg, "auxv")) {
            printf("auxv: uid=%lu euid=%lu gid=%lu egid=%lu\n", getauxval(AT_UID), getauxval(AT_EUID),
                   getauxval(AT_GID), getauxval(AT_EGID));
        } else if (!strcmp(arg, "ids16")) {  /* the old 16-bit calls (glibc makes getuid32) */
            printf("ids16: uid=%ld euid=%ld gid=%ld egid=%ld\n", syscall(SYS_getuid), syscall(SYS_geteuid),
                   syscall(SYS_getgid), syscall(SYS_getegid));
        } else if (!strcmp(arg, "ids")) {
            printf("ids: uid=%d euid=%d gid=%d egid=%d\n", getuid(), geteuid(), getgid(), getegid());
        } else if (!strcmp(arg, "unix") || !strcmp(arg, "unix-direct")) {
            unix_socket(val, arg[4] == '-');
        } else if (!strcmp(arg, "tcp")) {
            tcp_port(atoi(val));
        } else if (!strcmp(arg, "run")) {  /* run=PROG: the rest of argv is its command */
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                execv(val, argv + i);
                printf("exec %s: %s\n", val, strerrorname_np(errno));
                _exit(127);
            }
            int status;
            waitpid(pid, &status, 0);
            printf("exit: %d\n", WEXITSTATUS(status));
            return 0;
        }
        fflush(stdout);
    }
    return 0;
}
