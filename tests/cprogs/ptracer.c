/* A small guest tracer: what a tracer sees of its tracee through ptrace and waitpid.
 *   ptracer syscalls PATH   TRACEME + raise(SIGSTOP), PTRACE_SYSCALL loop over an open(PATH):
 *                           the path read at the entry stop, the result at the exit stop
 *   ptracer exec PROG       TRACEME + raise(SIGSTOP) + execv(PROG) under PTRACE_SYSCALL (as
 *                           strace does): the syscall numbers the tracee makes from its execve
 *   ptracer seize           PTRACE_SEIZE + INTERRUPT a running child, then a signal it gets
 *   ptracer clone           PTRACE_O_TRACECLONE: a thread's start, its own stops and its end
 *   ptracer waitid          the stops and the end as waitid(2) reports them (siginfo)
 * Each line it prints is the same natively and under PRoot. x86_64 only (it reads the
 * registers with PTRACE_GETREGS): elsewhere it builds and says so. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)

static int wait_for(pid_t pid, int options) {
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, options)) < 0 && errno == EINTR) {}
    if (r != pid) { printf("waitpid(%d) = %d: %s\n", pid, r, strerror(errno)); exit(2); }
    return status;
}

static void describe(const char *what, int status) {
    if (WIFEXITED(status)) printf("%s: exited %d\n", what, WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) printf("%s: killed by %s\n", what, sigabbrev_np(WTERMSIG(status)));
    else printf("%s: stopped %s event=%d sysgood=%d\n", what, sigabbrev_np(WSTOPSIG(status) & 0x7f),
                status >> 16, (WSTOPSIG(status) & 0x80) != 0);
}

static void read_string(pid_t pid, unsigned long addr, char *out, size_t size) {
    size_t n = 0;
    while (n + sizeof(long) < size) {
        errno = 0;
        long word = ptrace(PTRACE_PEEKDATA, pid, addr + n, 0);
        if (errno) break;
        memcpy(out + n, &word, sizeof word);
        if (memchr(&word, 0, sizeof word)) return;
        n += sizeof word;
    }
    out[n] = 0;
}

static int trace_syscalls(const char *path) {
    pid_t pid = fork();
    if (pid == 0) {
        if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) { perror("PTRACE_TRACEME"); _exit(1); }
        raise(SIGSTOP);
        int fd = open(path, O_RDONLY);
        _exit(fd >= 0 ? 3 : 4);
    }
    describe("first", wait_for(pid, 0));
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXIT);
    int entering = 1;
    for (;;) {
        ptrace(PTRACE_SYSCALL, pid, 0, 0);
        int status = wait_for(pid, 0);
        if (!WIFSTOPPED(status)) { describe("end", status); return 0; }
        if (status >> 16 == PTRACE_EVENT_EXIT) {
            unsigned long msg;
            ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg);
            printf("exit event: status %#lx\n", msg);
            continue;
        }
        if (WSTOPSIG(status) != (SIGTRAP | 0x80)) { describe("other", status); continue; }
        struct user_regs_struct regs;
        ptrace(PTRACE_GETREGS, pid, 0, &regs);
        if (regs.orig_rax == SYS_openat) {
            char buf[256];
            if (entering) {
                read_string(pid, regs.rsi, buf, sizeof buf);
                printf("openat entry: %s\n", buf);
            } else {
                read_string(pid, regs.rsi, buf, sizeof buf);
                printf("openat exit: %s ok=%d\n", buf, (long)regs.rax >= 0);
            }
        }
        entering = !entering;
    }
}

static int trace_exec(char **argv) {
    pid_t pid = fork();
    if (pid == 0) {
        if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) { perror("PTRACE_TRACEME"); _exit(1); }
        raise(SIGSTOP);
        char *no_env[] = {NULL};  /* the same calls whatever the caller's PWD */
        execve(argv[0], argv, no_env);
        _exit(127);
    }
    describe("first", wait_for(pid, 0));
    int status, execs = 0, calls = 0;
    for (;;) {
        ptrace(PTRACE_SYSCALL, pid, 0, 0);
        status = wait_for(pid, 0);
        if (!WIFSTOPPED(status)) break;
        if (WSTOPSIG(status) != SIGTRAP) { describe("other", status); continue; }
        struct user_regs_struct regs;
        ptrace(PTRACE_GETREGS, pid, 0, &regs);
        if (regs.rax == (unsigned long)-ENOSYS) {  /* an entry */
            printf("%lld ", regs.orig_rax);
            calls++;
            if (regs.orig_rax == SYS_execve) execs++;
        }
    }
    printf("\n");
    describe("end", status);
    printf("syscalls=%d execve=%d\n", calls, execs);
    return 0;
}

static int seize(void) {
    pid_t pid = fork();
    if (pid == 0) {
        for (;;) pause();
    }
    if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD) != 0) { perror("PTRACE_SEIZE"); return 1; }
    if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) != 0) { perror("PTRACE_INTERRUPT"); return 1; }
    describe("interrupt", wait_for(pid, 0));
    errno = 0;
    int again = waitpid(pid, NULL, WNOHANG);
    printf("wnohang=%d\n", again);
    ptrace(PTRACE_CONT, pid, 0, 0);
    kill(pid, SIGUSR1);
    int status = wait_for(pid, 0);
    describe("signal", status);
    siginfo_t si;
    ptrace(PTRACE_GETSIGINFO, pid, 0, &si);
    printf("siginfo: %s code=%d from-me=%d\n", sigabbrev_np(si.si_signo), si.si_code, si.si_pid == getpid());
    ptrace(PTRACE_CONT, pid, 0, WSTOPSIG(status));
    describe("end", wait_for(pid, 0));
    return 0;
}

static void *thread_main(void *arg) { (void)arg; return NULL; }

static int trace_clone(void) {
    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        pthread_t th;
        pthread_create(&th, NULL, thread_main, NULL);
        pthread_join(th, NULL);
        _exit(5);
    }
    describe("first", wait_for(pid, 0));
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACECLONE);
    ptrace(PTRACE_CONT, pid, 0, 0);
    int status = wait_for(pid, __WALL);
    describe("parent", status);
    unsigned long tid = 0;
    ptrace(PTRACE_GETEVENTMSG, pid, 0, &tid);
    printf("new thread is another task: %d\n", tid != 0 && (pid_t)tid != pid);
    describe("thread first", wait_for((pid_t)tid, __WALL));
    ptrace(PTRACE_CONT, (pid_t)tid, 0, 0);
    describe("thread end", wait_for((pid_t)tid, __WALL));
    ptrace(PTRACE_CONT, pid, 0, 0);
    describe("end", wait_for(pid, __WALL));
    return 0;
}

static void print_siginfo(const char *what, const siginfo_t *si) {
    printf("%s: signo=%d code=%d status=%#x is-child=%d\n", what, si->si_signo, si->si_code,
           si->si_status, si->si_pid > 0);
}

static int trace_waitid(void) {
    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        _exit(6);
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, pid, &si, WEXITED | WSTOPPED | WNOWAIT) != 0) { perror("waitid"); return 1; }
    print_siginfo("peek", &si);
    if (waitid(P_ALL, 0, &si, WEXITED | WSTOPPED) != 0) { perror("waitid"); return 1; }
    print_siginfo("stop", &si);
    memset(&si, 0, sizeof si);
    printf("wnohang=%d ", waitid(P_PID, pid, &si, WEXITED | WNOHANG));
    printf("pid=%d\n", si.si_pid);
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACEEXIT);
    ptrace(PTRACE_CONT, pid, 0, 0);
    if (waitid(P_PID, pid, &si, WEXITED | WSTOPPED) != 0) { perror("waitid"); return 1; }
    print_siginfo("exit event", &si);
    ptrace(PTRACE_CONT, pid, 0, 0);
    if (waitid(P_PID, pid, &si, WEXITED) != 0) { perror("waitid"); return 1; }
    print_siginfo("end", &si);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 2 && strcmp(argv[1], "syscalls") == 0) return trace_syscalls(argv[2]);
    if (argc > 2 && strcmp(argv[1], "exec") == 0) return trace_exec(argv + 2);
    if (argc > 1 && strcmp(argv[1], "seize") == 0) return seize();
    if (argc > 1 && strcmp(argv[1], "clone") == 0) return trace_clone();
    if (argc > 1 && strcmp(argv[1], "waitid") == 0) return trace_waitid();
    fprintf(stderr, "usage: ptracer syscalls PATH | exec PROG [ARG...] | seize | clone | waitid\n");
    return 2;
}
#else
int main(void) {
    fprintf(stderr, "ptracer: x86_64 only\n");
    return 2;
}
#endif
