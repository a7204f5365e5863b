/* Prints what /proc/self/exe names; with "again" re-executes itself through it. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n < 0) { perror("readlink"); return 2; }
    buf[n] = 0;
    printf("exe=%s argv0=%s\n", buf, argv[0]);
    if (argc > 1 && strcmp(argv[1], "again") == 0) {
        char *args[] = {"renamed", "done", NULL};
        fflush(stdout);
        execv("/proc/self/exe", args);
        perror("execv");
        return 3;
    }
    return 0;
}
