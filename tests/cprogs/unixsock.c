/* AF_UNIX sockets at a guest path given in argv[1]: bind, getsockname,
 * connect from a child, exchange a message. The host path may be longer than
 * sun_path allows; the guest must not notice. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    unlink(argv[1]);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
    if (listen(s, 1) != 0) { perror("listen"); return 1; }
    struct sockaddr_un got;
    socklen_t len = sizeof got;
    if (getsockname(s, (struct sockaddr *)&got, &len) != 0) { perror("getsockname"); return 1; }
    printf("name=%s\n", got.sun_path);
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); _exit(1); }
        if (write(c, "ping", 4) != 4) _exit(1);
        _exit(0);
    }
    int c = accept(s, NULL, NULL);
    char buf[8] = {0};
    if (c < 0 || read(c, buf, 4) != 4) { perror("accept/read"); return 1; }
    int status;
    waitpid(pid, &status, 0);
    printf("got=%s child=%d\n", buf, WEXITSTATUS(status));
    unlink(argv[1]);
    return 0;
}
