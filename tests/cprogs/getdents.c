/* Raw getdents64 with a chosen buffer size: prints "name type" per entry (sorted by
 * the test), "calls=N" (calls that returned entries), then what one more call after
 * the end returns ("again=0": bound names are not repeated).
 * Usage: getdents DIR BUFSIZE */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct d64 { unsigned long long ino; long long off; unsigned short reclen; unsigned char type; char name[]; };

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (fd < 0) { perror("open"); return 1; }
    size_t size = strtoul(argv[2], 0, 10);
    char *buf = malloc(size);
    int calls = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, size);
        if (n < 0) { printf("error=%s\n", errno == EINVAL ? "EINVAL" : strerror(errno)); return 1; }
        if (n == 0) break;
        calls++;
        for (long pos = 0; pos < n;) {
            struct d64 *d = (struct d64 *)(buf + pos);
            if (strcmp(d->name, ".") && strcmp(d->name, ".."))
                printf("%s %s\n", d->name, d->type == DT_DIR ? "dir" : d->type == DT_REG ? "reg" : "other");
            pos += d->reclen;
        }
    }
    printf("calls=%d\n", calls);
    printf("again=%ld\n", syscall(SYS_getdents64, fd, buf, size));
    return 0;
}
