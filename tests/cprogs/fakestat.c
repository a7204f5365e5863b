/* The stat family under -0, by raw syscalls (tests/engine/test_fakeroot_fast.py).
 *
 *   fakestat dump PATH...      every stat form of each PATH: result, errno and the whole
 *                              buffer in hex (the times but birth zeroed), for a comparison
 *                              of the fast path with the pure-Python engine
 *   fakestat loop FILE N       N rounds of chown/chmod/fchown then each stat form must
 *                              show the new owner and mode at once (also after a fork, a
 *                              rename, an unlink, a mknod)
 *   fakestat watch FILE UID S  stat FILE until it shows owner UID (another engine's chown),
 *                              at most S seconds: prints "seen" or "timeout"
 *   fakestat ids               getuid/geteuid/getgid/getegid (raw syscalls) before and after
 *                              setres[ug]id, in a thread that keeps its own, in a child,
 *                              after an exec (prints one line each)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void hex(const char *what, long rc, const void *buf, size_t n) {
    const unsigned char *b = buf;
    printf("%s rc=%ld errno=%d ", what, rc, rc < 0 ? errno : 0);
    for (size_t i = 0; rc == 0 && i < n; i++) printf("%02x", b[i]);
    printf("\n");
}

/* (the times zeroed: the engine's start touches the root directory) */
static void dump_stat(const char *what, long rc, struct stat *st) {
    memset(&st->st_atim, 0, sizeof st->st_atim);
    memset(&st->st_mtim, 0, sizeof st->st_mtim);
    memset(&st->st_ctim, 0, sizeof st->st_ctim);
    hex(what, rc, st, sizeof *st);
}

static void dump_statx(const char *what, long rc, struct statx *x) {
    memset(&x->stx_atime, 0, sizeof x->stx_atime);
    memset(&x->stx_mtime, 0, sizeof x->stx_mtime);
    memset(&x->stx_ctime, 0, sizeof x->stx_ctime);
    hex(what, rc, x, sizeof *x);
}

/* stat and lstat themselves where the architecture has them (x86_64), else the
   newfstatat they become in the generic table (aarch64) */
static long sys_stat(const char *path, struct stat *st) {
#ifdef SYS_stat
    return syscall(SYS_stat, path, st);
#else
    return syscall(SYS_newfstatat, AT_FDCWD, path, st, 0);
#endif
}

static long sys_lstat(const char *path, struct stat *st) {
#ifdef SYS_lstat
    return syscall(SYS_lstat, path, st);
#else
    return syscall(SYS_newfstatat, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
#endif
}

static void result(const char *what, long rc) {
    printf("%s rc=%ld errno=%d\n", what, rc, rc < 0 ? errno : 0);
}

static void dump(const char *path) {
    struct stat st;
    struct statx x;
    unsigned mask = STATX_BASIC_STATS | STATX_BTIME;
    printf("== %s\n", path);
    memset(&st, 0, sizeof st); dump_stat("stat", sys_stat(path, &st), &st);
    memset(&st, 0, sizeof st); dump_stat("lstat", sys_lstat(path, &st), &st);
    memset(&st, 0, sizeof st); dump_stat("fstatat", syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0), &st);
    memset(&st, 0, sizeof st);
    dump_stat("fstatat-nofollow", syscall(SYS_newfstatat, AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW), &st);
    memset(&x, 0, sizeof x); dump_statx("statx", syscall(SYS_statx, AT_FDCWD, path, 0, mask, &x), &x);
    memset(&x, 0, sizeof x);
    dump_statx("statx-nofollow", syscall(SYS_statx, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, mask, &x), &x);
    memset(&x, 0, sizeof x); dump_statx("statx-type", syscall(SYS_statx, AT_FDCWD, path, 0, STATX_TYPE, &x), &x);
    result("fault", syscall(SYS_newfstatat, AT_FDCWD, path, NULL, 0));
    result("fstat-cwd", syscall(SYS_fstat, AT_FDCWD, &st));
    result("fstat-bad", syscall(SYS_fstat, 999, &st));
    int fd = open(path, O_PATH | O_NOFOLLOW);
    if (fd >= 0) {
        memset(&st, 0, sizeof st); dump_stat("fstat", syscall(SYS_fstat, fd, &st), &st);
        memset(&st, 0, sizeof st);
        dump_stat("fstatat-empty", syscall(SYS_newfstatat, fd, "", &st, AT_EMPTY_PATH), &st);
        memset(&x, 0, sizeof x); dump_statx("statx-empty", syscall(SYS_statx, fd, "", AT_EMPTY_PATH, mask, &x), &x);
        close(fd);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir && slash[1]) {
        *slash = 0;
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        memset(&st, 0, sizeof st);
        dump_stat("fstatat-dirfd", syscall(SYS_newfstatat, dfd, slash + 1, &st, AT_SYMLINK_NOFOLLOW), &st);
        if (chdir(dir) == 0) {
            memset(&st, 0, sizeof st); dump_stat("stat-cwd", sys_stat(slash + 1, &st), &st);
            memset(&st, 0, sizeof st); dump_stat("lstat-cwd", sys_lstat(slash + 1, &st), &st);
        }
        close(dfd);
    }
}

static int fails;

static void expect(const char *what, int round, long got, long want) {
    if (got != want) {
        printf("%s round %d: %ld, not %ld\n", what, round, got, want);
        fails++;
    }
}

/* Every stat form of `path` shows uid, gid and the permission bits `perm`. */
static void check(const char *what, int round, const char *path, long uid, long gid, long perm) {
    struct stat st;
    struct statx x;
    char label[64];
    snprintf(label, sizeof label, "%s stat", what);
    if (stat(path, &st) != 0) { expect(label, round, errno, 0); return; }
    expect(label, round, st.st_uid, uid); expect(label, round, st.st_gid, gid);
    expect(label, round, st.st_mode & 07777, perm);
    snprintf(label, sizeof label, "%s lstat", what);
    if (sys_lstat(path, &st) != 0) { expect(label, round, errno, 0); return; }
    expect(label, round, st.st_uid, uid); expect(label, round, st.st_mode & 07777, perm);
    snprintf(label, sizeof label, "%s statx", what);
    if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &x) != 0) { expect(label, round, errno, 0); return; }
    expect(label, round, x.stx_uid, uid); expect(label, round, x.stx_gid, gid);
    expect(label, round, x.stx_mode & 07777, perm);
    int fd = open(path, O_PATH);
    snprintf(label, sizeof label, "%s fstat", what);
    if (fd < 0 || fstat(fd, &st) != 0) { expect(label, round, errno, 0); return; }
    expect(label, round, st.st_uid, uid); expect(label, round, st.st_gid, gid);
    close(fd);
}

static int loop(const char *file, int n) {
    char moved[4096], node[4096];
    snprintf(moved, sizeof moved, "%s.moved", file);
    snprintf(node, sizeof node, "%s.node", file);
    for (int i = 0; i < n; i++) {
        if (chown(file, 1000 + i, 2000 + i) != 0) { perror("chown"); return 1; }
        check("chown", i, file, 1000 + i, 2000 + i, 0644);
        if (chmod(file, 0600 + (i % 64)) != 0) { perror("chmod"); return 1; }
        check("chmod", i, file, 1000 + i, 2000 + i, 0600 + (i % 64));
        int fd = open(file, O_RDONLY);
        if (fd < 0 || fchown(fd, 3000 + i, -1) != 0) { perror("fchown"); return 1; }
        close(fd);
        check("fchown", i, file, 3000 + i, 2000 + i, 0600 + (i % 64));
        pid_t child = fork();
        if (child == 0) _exit(chown(file, 4000 + i, 5000 + i) != 0);
        int status;
        waitpid(child, &status, 0);
        check("fork", i, file, 4000 + i, 5000 + i, 0600 + (i % 64));
        if (rename(file, moved) != 0) { perror("rename"); return 1; }
        check("rename", i, moved, 4000 + i, 5000 + i, 0600 + (i % 64));
        if (rename(moved, file) != 0 || chmod(file, 0644) != 0) { perror("rename back"); return 1; }
        if (mknod(node, S_IFCHR | 0640, makedev(1, 3 + i)) != 0) { perror("mknod"); return 1; }
        struct stat st;
        if (stat(node, &st) != 0) { perror("stat node"); return 1; }
        expect("mknod type", i, S_ISCHR(st.st_mode), 1);
        expect("mknod rdev", i, (long)st.st_rdev, (long)makedev(1, 3 + i));
        expect("mknod size", i, (long)st.st_size, 0);
        if (unlink(node) != 0) { perror("unlink"); return 1; }
        int nfd = open(node, O_CREAT | O_EXCL | O_WRONLY, 0644);  /* may get the inode number back */
        if (nfd < 0 || write(nfd, "x", 1) != 1) { perror("create"); return 1; }
        close(nfd);
        check("unlink", i, node, 0, 0, 0644);
        if (unlink(node) != 0) { perror("unlink again"); return 1; }
    }
    printf(fails ? "failed\n" : "ok\n");
    return fails != 0;
}

static int watch(const char *file, long uid, double seconds) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct stat st;
        if (stat(file, &st) == 0 && (long)st.st_uid == uid) { printf("seen\n"); return 0; }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 > seconds) break;
    }
    printf("timeout\n");
    return 1;
}

static void print_ids(const char *when) {
    printf("%s %ld %ld %ld %ld\n", when, syscall(SYS_getuid), syscall(SYS_geteuid), syscall(SYS_getgid),
           syscall(SYS_getegid));
}

static int go, done;

static void *thread_ids(void *unused) {
    print_ids("thread-before");
    __atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&done, __ATOMIC_SEQ_CST)) usleep(1000);
    print_ids("thread-after");  /* raw set*id calls changed the main thread's ids only */
    return NULL;
}

static int ids(const char *self) {
    pthread_t th;
    for (int i = 0; i < 3; i++) print_ids("start");
    pthread_create(&th, NULL, thread_ids, NULL);
    while (!__atomic_load_n(&go, __ATOMIC_SEQ_CST)) usleep(1000);
    if (syscall(SYS_setresgid, 5, 6, 7) != 0 || syscall(SYS_setresuid, 1, 2, 3) != 0) { perror("setres*id"); return 1; }
    for (int i = 0; i < 3; i++) print_ids("after");
    __atomic_store_n(&done, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    if (syscall(SYS_setresuid, -1, 3, -1) != 0) { perror("setresuid"); return 1; }
    print_ids("saved");
    pid_t child = fork();
    if (child == 0) {
        print_ids("child");
        execl(self, self, "ids-exec", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(child, &status, 0);
    print_ids("parent");
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "dump") == 0) {
        for (int i = 2; i < argc; i++) dump(argv[i]);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "ids") == 0) return ids(argv[0]);
    if (argc == 2 && strcmp(argv[1], "ids-exec") == 0) {
        print_ids("exec");
        print_ids("exec");
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "loop") == 0) return loop(argv[2], atoi(argv[3]));
    if (argc == 5 && strcmp(argv[1], "watch") == 0) return watch(argv[2], atol(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: fakestat dump PATH... | loop FILE N | watch FILE UID SECONDS | ids\n");
    return 2;
}
