/* AF_UNIX datagrams: bind a receiver at argv[1], sendto() it by path and
 * sendmsg() it with msg_name; recvfrom reports the sender's bound path (a guest path). */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static socklen_t addr(struct sockaddr_un *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strncpy(a->sun_path, path, sizeof a->sun_path - 1);
    return sizeof *a;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    struct sockaddr_un ra, sa;
    int r = socket(AF_UNIX, SOCK_DGRAM, 0), s = socket(AF_UNIX, SOCK_DGRAM, 0);
    unlink(argv[1]);
    unlink(argv[2]);
    if (bind(r, (struct sockaddr *)&ra, addr(&ra, argv[1])) != 0) { perror("bind r"); return 1; }
    if (bind(s, (struct sockaddr *)&sa, addr(&sa, argv[2])) != 0) { perror("bind s"); return 1; }
    if (sendto(s, "one", 3, 0, (struct sockaddr *)&ra, sizeof ra) != 3) { perror("sendto"); return 1; }
    struct iovec iov = {.iov_base = "two", .iov_len = 3};
    struct msghdr m = {.msg_name = &ra, .msg_namelen = sizeof ra, .msg_iov = &iov, .msg_iovlen = 1};
    if (sendmsg(s, &m, 0) != 3) { perror("sendmsg"); return 1; }
    for (int i = 0; i < 2; i++) {
        char buf[8] = {0};
        struct sockaddr_un from;
        socklen_t len = sizeof from;
        if (recvfrom(r, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len) != 3) { perror("recvfrom"); return 1; }
        printf("%s from=%s\n", buf, from.sun_path);
    }
    if (argc > 3) return 0;  /* "keep": leave the sockets for the caller to find */
    unlink(argv[1]);
    unlink(argv[2]);
    return 0;
}
