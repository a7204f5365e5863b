/* Prints "ready" and waits; SIGINT/SIGTERM/SIGHUP are reported and end it with 0.
 * With "self" it kills itself with SIGUSR1 (exit status 128+10 for the caller). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void handler(int sig) { got = sig; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "self") == 0) {
        kill(getpid(), SIGUSR1);
        return 0;
    }
    signal(SIGINT, handler);
    signal(SIGTERM, handler);
    signal(SIGHUP, handler);
    printf("ready\n");
    fflush(stdout);
    while (!got) pause();
    printf("got signal %d\n", (int)got);
    return 0;
}
