/* getcwd after the working directory is removed: Linux says ENOENT. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp/rmcwd-test";
    char buf[4096];
    if (mkdir(dir, 0755) != 0) { perror("mkdir"); return 2; }
    if (chdir(dir) != 0) { perror("chdir"); return 2; }
    if (!getcwd(buf, sizeof buf)) { perror("getcwd"); return 2; }
    printf("cwd=%s\n", buf);
    if (rmdir(dir) != 0) { perror("rmdir"); return 2; }
    if (getcwd(buf, sizeof buf)) { printf("after=%s\n", buf); return 1; }
    printf("after-errno=%s\n", errno == ENOENT ? "ENOENT" : strerror(errno));
    return 0;
}
