/* execve errors the engine must report as the kernel would. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char *args[] = {argv[i], NULL};
        execv(argv[i], args);
        printf("%s: %s\n", argv[i], errno == ENOENT ? "ENOENT" : errno == EACCES ? "EACCES"
               : errno == ENOEXEC ? "ENOEXEC" : strerror(errno));
    }
    return 0;
}
