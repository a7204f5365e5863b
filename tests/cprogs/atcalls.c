/* fd-relative *at calls: a dirfd opened on a guest directory, AT_SYMLINK_NOFOLLOW,
 * AT_EMPTY_PATH, renameat/unlinkat/readlinkat/mkdirat, /proc/self/fd readlink. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(x) do { if (!(x)) { printf("FAIL %s (line %d)\n", #x, __LINE__); return 1; } } while (0)

int main(int argc, char **argv) {
    const char *base = argc > 1 ? argv[1] : "/tmp";
    char buf[4096];
    struct stat st;
    int d = open(base, O_RDONLY | O_DIRECTORY);
    CHECK(d >= 0);
    CHECK(mkdirat(d, "atdir", 0755) == 0);
    int f = openat(d, "atdir/file", O_CREAT | O_WRONLY, 0644);
    CHECK(f >= 0);
    CHECK(write(f, "hello", 5) == 5);
    close(f);
    CHECK(symlinkat("/atdir-abs-target", d, "atdir/abslink") == 0);
    CHECK(fstatat(d, "atdir/abslink", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode));
    ssize_t n = readlinkat(d, "atdir/abslink", buf, sizeof buf);
    CHECK(n == 17 && memcmp(buf, "/atdir-abs-target", 17) == 0);
    CHECK(fstatat(d, "atdir/file", &st, 0) == 0 && st.st_size == 5);
    int sub = openat(d, "atdir", O_RDONLY | O_DIRECTORY);
    CHECK(sub >= 0);
    CHECK(fstatat(sub, "", &st, AT_EMPTY_PATH) == 0 && S_ISDIR(st.st_mode));
    CHECK(renameat(sub, "file", d, "atdir/file2") == 0);
    CHECK(faccessat(sub, "file2", R_OK, 0) == 0);
    CHECK(faccessat(sub, "file", R_OK, 0) != 0);
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", sub);
    char link[4096];
    n = readlink(buf, link, sizeof link - 1);
    CHECK(n > 0);
    link[n] = 0;
    printf("fdlink=%s\n", link);
    CHECK(unlinkat(sub, "abslink", 0) == 0);
    CHECK(unlinkat(sub, "file2", 0) == 0);
    CHECK(unlinkat(d, "atdir", AT_REMOVEDIR) == 0);
    printf("OK\n");
    return 0;
}
