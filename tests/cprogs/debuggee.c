/* A program for gdb in the guest: a function two threads call (a breakpoint), then main's. */
#include <pthread.h>
#include <stdio.h>

int add(int a, int b) { return a + b; }

static void *worker(void *arg) {
    printf("thread %d\n", add(*(int *)arg, 1));
    return NULL;
}

int main(void) {
    int x = 41;
    pthread_t th;
    pthread_create(&th, NULL, worker, &x);
    pthread_join(th, NULL);
    printf("sum=%d\n", add(2, 3));
    return 0;
}
