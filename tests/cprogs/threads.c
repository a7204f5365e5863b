/* Threads share the working directory (CLONE_FS): a chdir in one is seen by the
 * others; many threads open and stat guest paths at once. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

static void *worker(void *arg) {
    (void)arg;
    struct stat st;
    for (int i = 0; i < 200; i++) {
        if (stat("/etc/passwd", &st) != 0) __sync_fetch_and_add(&failures, 1);
        if (access("bin", F_OK) != 0) __sync_fetch_and_add(&failures, 1);  /* relative to / */
    }
    return NULL;
}

static void *cwd_reader(void *arg) {
    char *out = arg;
    if (!getcwd(out, 256)) strcpy(out, "?");
    return NULL;
}

int main(void) {
    pthread_t t[8];
    if (chdir("/") != 0) return 2;
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    if (chdir("/etc") != 0) return 2;
    char seen[256];
    pthread_t r;
    pthread_create(&r, NULL, cwd_reader, seen);
    pthread_join(r, NULL);
    printf("failures=%d thread-cwd=%s\n", failures, seen);
    return failures != 0;
}
