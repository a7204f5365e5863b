/* A path syscall interrupted by a signal whose handler (SA_RESTART) uses the
 * stack below the interrupted frame, then restarted by the kernel: the restarted
 * open must still see the guest's path (the tracer's rewritten copy below the
 * red zone is gone by then). */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int hits;

static void handler(int sig) {
    volatile char junk[16384];
    (void)sig;
    memset((char *)junk, 'X', sizeof junk);
    hits++;
}

int main(int argc, char **argv) {
    const char *fifo = argc > 1 ? argv[1] : "/tmp/restart.fifo";
    unlink(fifo);
    if (mkfifo(fifo, 0600) != 0) { perror("mkfifo"); return 2; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 5; i++) { usleep(100000); kill(parent, SIGUSR1); }
        usleep(100000);
        int w = open(fifo, O_WRONLY);
        if (w < 0) { perror("child open"); _exit(1); }
        if (write(w, "restarted", 9) != 9) _exit(1);
        _exit(0);
    }
    int fd = open(fifo, O_RDONLY);  /* blocks until the writer comes */
    if (fd < 0) { perror("open"); return 1; }
    char buf[16] = {0};
    if (read(fd, buf, 9) != 9) { perror("read"); return 1; }
    int status;
    waitpid(pid, &status, 0);
    printf("%s hits=%d child=%d\n", buf, hits, WEXITSTATUS(status));
    unlink(fifo);
    return 0;
}
