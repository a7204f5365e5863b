/* SysV IPC between a parent and its children: shared memory, semaphores, message
 * queues, blocking calls on both sides, SEM_UNDO, key lookup from an exec'd program.
 * Prints one line per check; the output is the same natively and under emulation.
 * Usage: sysvipc            (the whole scenario)
 *        sysvipc attach KEY (internal: an exec'd process finds the segment by key) */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

struct msg { long type; char text[64]; };
union semun { int val; struct semid_ds *buf; unsigned short *array; };

static void die(const char *what) { printf("FAIL %s: %s\n", what, strerrorname_np(errno)); exit(1); }
static int semop1(int id, int num, int op, int flg) {
    struct sembuf b = { (unsigned short)num, (short)op, (short)flg };
    return semop(id, &b, 1);
}
static long nattch(int id) {
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) < 0) die("shmctl IPC_STAT");
    return (long)ds.shm_nattch;
}

static int attach_by_key(key_t key) {
    int id = shmget(key, 0, 0);
    if (id < 0) die("shmget by key");
    char *p = shmat(id, NULL, SHM_RDONLY);
    if (p == (void *)-1) die("shmat by key");
    printf("exec'd process reads: %s\n", p);
    return shmdt(p) < 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "attach") == 0) return attach_by_key((key_t)strtol(argv[2], 0, 0));
    key_t key = 0x0c1e0000 + (getpid() & 0xffff);
    int shm = shmget(key, 65536, IPC_CREAT | IPC_EXCL | 0600);
    if (shm < 0) die("shmget");
    if (shmget(key, 65536, IPC_CREAT | IPC_EXCL | 0600) >= 0 || errno != EEXIST) die("shmget EEXIST");
    if (shmget(key, 1 << 20, 0) >= 0 || errno != EINVAL) die("shmget too big");
    int sem = semget(IPC_PRIVATE, 2, 0600);
    int q = msgget(IPC_PRIVATE, 0600);
    if (sem < 0 || q < 0) die("semget/msgget");
    char *p = shmat(shm, NULL, 0);
    if (p == (void *)-1) die("shmat");
    strcpy(p, "written by the parent");
    printf("nattch after shmat: %ld\n", nattch(shm));
    if (semop1(sem, 0, -1, IPC_NOWAIT) == 0 || errno != EAGAIN) die("semop IPC_NOWAIT");
    struct msg m;
    if (msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT) >= 0 || errno != ENOMSG) die("msgrcv IPC_NOWAIT");
    printf("empty: semop EAGAIN, msgrcv ENOMSG\n");

    pid_t child = fork();
    if (child == 0) {
        if (semop1(sem, 0, -1, 0) < 0) die("child semop wait");          /* blocks */
        char reply[64];
        snprintf(reply, sizeof reply, "child saw '%s'", p);
        m.type = 2; strcpy(m.text, reply);
        if (msgsnd(q, &m, strlen(m.text) + 1, 0) < 0) die("msgsnd");
        if (msgrcv(q, &m, sizeof m.text, 1, 0) < 0) die("child msgrcv");  /* blocks */
        strcpy(p, m.text);
        if (semop1(sem, 1, 1, SEM_UNDO) < 0) die("semop undo");
        _exit(0);
    }
    printf("nattch after fork: %ld\n", nattch(shm));
    usleep(200000);                                   /* let the child block */
    strcpy(p, "hello child");
    if (semop1(sem, 0, 1, 0) < 0) die("semop post");
    if (msgrcv(q, &m, sizeof m.text, 2, 0) < 0) die("msgrcv");          /* blocks */
    printf("message type %ld: %s\n", m.type, m.text);
    m.type = 1; strcpy(m.text, "written by the child");
    if (msgsnd(q, &m, strlen(m.text) + 1, 0) < 0) die("msgsnd 1");
    int st;
    waitpid(child, &st, 0);
    printf("child exit %d; shm now: %s\n", WEXITSTATUS(st), p);
    printf("nattch after the child: %ld; sem 1 after SEM_UNDO: %d\n", nattch(shm), semctl(sem, 1, GETVAL));

    union semun arg;
    unsigned short vals[2] = { 3, 4 };
    arg.array = vals;
    if (semctl(sem, 0, SETALL, arg) < 0) die("SETALL");
    vals[0] = vals[1] = 0;
    if (semctl(sem, 0, GETALL, arg) < 0) die("GETALL");
    struct semid_ds sds; arg.buf = &sds;
    if (semctl(sem, 0, IPC_STAT, arg) < 0) die("sem IPC_STAT");
    printf("semaphores %u %u, nsems %lu\n", vals[0], vals[1], (unsigned long)sds.sem_nsems);

    m.type = 5; strcpy(m.text, "a long message");
    msgsnd(q, &m, strlen(m.text) + 1, 0);
    if (msgrcv(q, &m, 4, 0, IPC_NOWAIT) >= 0 || errno != E2BIG) die("msgrcv E2BIG");
    struct msqid_ds qds;
    if (msgctl(q, IPC_STAT, &qds) < 0) die("msg IPC_STAT");
    printf("queue: %lu message(s), %lu bytes\n", (unsigned long)qds.msg_qnum, (unsigned long)qds.__msg_cbytes);
    ssize_t n = msgrcv(q, &m, 4, -9, MSG_NOERROR);
    printf("truncated to %zd: %.4s\n", n, m.text);

    fflush(stdout);
    pid_t reader = fork();
    if (reader == 0) {
        char k[32]; snprintf(k, sizeof k, "%d", (int)key);
        execl("/proc/self/exe", argv[0], "attach", k, (char *)0);
        execl(argv[0], argv[0], "attach", k, (char *)0);
        _exit(127);
    }
    waitpid(reader, &st, 0);
    printf("reader exit %d\n", WEXITSTATUS(st));

    if (shmctl(shm, IPC_RMID, NULL) < 0) die("shm IPC_RMID");
    printf("after IPC_RMID, still attached: %ld; key gone: %s\n", nattch(shm),
           shmget(key, 0, 0) < 0 && errno == ENOENT ? "yes" : "no");
    if (shmdt(p) < 0) die("shmdt");
    if (shmdt(p) == 0 || errno != EINVAL) die("shmdt twice");
    printf("segment gone after shmdt: %s\n", shmctl(shm, IPC_STAT, &(struct shmid_ds){0}) < 0 ? "yes" : "no");
    if (semctl(sem, 0, IPC_RMID) < 0 || msgctl(q, IPC_RMID, NULL) < 0) die("IPC_RMID");
    if (semop1(sem, 0, 1, 0) == 0 || (errno != EINVAL && errno != EIDRM)) die("semop after IPC_RMID");
    printf("done\n");
    return 0;
}
