/* The compiled fast path's execve (included by _fastpath.c: it uses that file's mirrors).
 *
 * An execve the Python engine planned once (ocirun/engine/execve.py: a native ELF, run
 * by the guest's loader or, static, by itself) is carried out here the next times,
 * from an exec record Python pushed (fastpath.note_exec), when everything the plan
 * was made from is still the same:
 *  - the program's path translates to the record's host file (the translation
 *    mirror, or derived from the parent directory's, as for any path syscall);
 *  - that file is a regular file the tracer may execute (stat, access: as
 *    ExecPlanner._open_exec) and its first bytes, as many as the plan's parse read
 *    (ELF header, program headers, PT_INTERP), are the record's (read again:
 *    the content decides, not a time stamp);
 *  - the loader's guest path (PT_INTERP) translates to the record's loader, still a
 *    regular file with the same stat identity (device, inode, size, mtime, ctime:
 *    whether it takes --argv0 was read from that file);
 *  - the name executed has its link to the loader (ScratchDir.named_link) made.
 * Then the loader (or the static program) and the new argv are written below the red
 * zone as enter_execve writes them, and the process's new /proc/self/exe and the
 * loader's words are kept for Python's exec event (exec_taken). A script with one "#!"
 * line whose interpreter has a record is run the same way (_fastscript.c). Anything
 * else, a foreign ELF, a /proc path, an argv without argv[0], is Python's. A program
 * that does not exist (a PATH search's tries) fails with ENOENT here, as in Python.
 * The other stops of a fork+exec are _fasttree.c's, which shares the state below.
 */
#include <fcntl.h>

static void cwd_forget(int pid);  /* _fastpath.c */

#define F_EXEC 32
#define EXEC_RECORDS 512
#define EXEC_NAMES 4
#define EXEC_HEAD_MAX 8192
#define ARGV_MAX 4096
#define EXECS CWDS
#define EXEC_BLOB (KEY_MAX + 2 * PATH_MAX_ + (ARGV_MAX + 8) * 8 + 256)

typedef struct { uint64_t dev, ino, size; int64_t mtime_s, mtime_ns, ctime_s, ctime_ns; } ident_t;
typedef struct {
    char *host;                 /* the program's host file (the key) */
    unsigned char *head;        /* its first bytes as the plan's parse read them */
    size_t head_len, head_want; /* what a read of head_want bytes gave */
    char *guest;                /* View.to_guest(host): its /proc/self/exe */
    char *interp, *loader;      /* PT_INTERP and its host path (NULL: static) */
    ident_t loader_id;
    int argv0;                  /* the loader takes --argv0 */
    char *names[EXEC_NAMES], *links[EXEC_NAMES];  /* names executed -> links to the loader */
} exec_rec_t;
typedef struct { int pid; char *guest, *argv0; int words; long cs; } exec_done_t;  /* cs: 0 unknown */

static exec_rec_t *exec_recs[EXEC_RECORDS];
static int plain_stops;       /* set_plain_stops */
static int plain[EXECS];      /* pids whose last stop was finished here */
static int first[EXECS];      /* forked children whose first stop is resumed here */
#define QUEUE_MAX 256
enum { Q_EXEC = 1, Q_EXIT, Q_FORK };
typedef struct { int kind, pid; long value; char *exe, *argv0; int words; } tree_event_t;
static tree_event_t queue[QUEUE_MAX];  /* events resumed here, for Python (on_tree) */
static size_t n_queue;
static int defer_exec, defer_exit, defer_fork, keep_pid;
static PyObject *on_tree;
static size_t n_exec_recs;
static exec_done_t exec_done[EXECS];
/* _fastscript.c */
static int script_of(const char *host, const struct stat *st, const char **interp, const char **arg, char *ihost,
                     struct stat *ist);
static void script_clear(void);
/* _fasttree.c */
static int fork_event(pid_t pid, int event);
static void fork_early(int pid);
static void born_taken(void);
static void fork_reset(void);

static void exec_rec_free(exec_rec_t *r) {
    if (!r) return;
    free(r->host); free(r->head); free(r->guest); free(r->interp); free(r->loader);
    for (int i = 0; i < EXEC_NAMES; i++) { free(r->names[i]); free(r->links[i]); }
    free(r);
}

static size_t exec_slot(const char *host) {
    size_t i = hash_str(host, 0) % EXEC_RECORDS;
    while (exec_recs[i] && strcmp(exec_recs[i]->host, host) != 0) i = (i + 1) % EXEC_RECORDS;
    return i;
}

static void exec_done_forget(int pid) {
    exec_done_t *d = &exec_done[(unsigned)pid % EXECS];
    if (d->pid != pid) return;
    free(d->guest); free(d->argv0);
    *d = (exec_done_t){0, NULL, NULL, 0, 0};
}

static void exec_clear_records(void) {
    for (size_t i = 0; i < EXEC_RECORDS; i++) { exec_rec_free(exec_recs[i]); exec_recs[i] = NULL; }
    n_exec_recs = 0;
    script_clear();
}

/* A process exec'd or is gone: what was kept for it. */
static void exec_forget_pid(int pid) {
    unsigned k = (unsigned)pid % EXECS;
    exec_done_forget(pid);
    if (plain[k] == pid) plain[k] = 0;
    if (first[k] == pid) first[k] = 0;
}

/* Everything forgotten (the fast path turned off; fastpath.stop hands the pending execs
 * and expected first stops to Python first). */
static void exec_reset(void) {
    exec_clear_records();
    for (int i = 0; i < EXECS; i++) exec_done_forget(exec_done[i].pid);
    memset(plain, 0, sizeof plain);
    memset(first, 0, sizeof first);
    plain_stops = defer_exec = defer_exit = keep_pid = 0;
    for (size_t i = 0; i < n_queue; i++) { free(queue[i].exe); free(queue[i].argv0); }
    n_queue = 0;
    Py_CLEAR(on_tree);
    fork_reset();
}

static ident_t ident_of(const struct stat *st) {
    return (ident_t){(uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size, st->st_mtim.tv_sec,
                     st->st_mtim.tv_nsec, st->st_ctim.tv_sec, st->st_ctim.tv_nsec};
}

/* The host path of guest `key` followed, as translate() finds it (mirror or derived). */
static int exec_host(const char *key, char *host) {
    const entry_t *e = cache_get(key, 1);
    if (e) {
        if (e->host_len >= PATH_MAX_) return 0;
        memcpy(host, e->host, e->host_len + 1);
    } else {
        if (!derive(key, 1, host)) return 0;
        table_put(&cache, key, host, 1);
    }
    return strncmp(host, "/proc/", 6) != 0;
}

/* The code segment a process runs in after executing the record's program: 64-bit
 * user code for an x86_64 ELF (ELFCLASS64, EM_X86_64; its loader is one too), else 0
 * (unknown: read at the exec event). */
static long exec_cs(const exec_rec_t *r) {
    const unsigned char *h = r->head;
    return r->head_len > 19 && h[4] == 2 && h[5] == 1 && h[18] == 62 && h[19] == 0 ? 0x33 : 0;
}

/* The program file is still what its record was made from (1). */
static int exec_same_program(const exec_rec_t *r, const char *host, const struct stat *st) {
    unsigned char buf[EXEC_HEAD_MAX];
    if (!S_ISREG(st->st_mode) || access(host, X_OK) != 0) return 0;
    int fd = open(host, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return 0;
    ssize_t n = pread(fd, buf, r->head_want, 0);
    close(fd);
    return n == (ssize_t)r->head_len && memcmp(buf, r->head, r->head_len) == 0;
}

/* The loader is still the record's file (1). */
static int exec_same_loader(const exec_rec_t *r) {
    char host[PATH_MAX_];
    struct stat st;
    if (!exec_host(r->interp, host) || strcmp(host, r->loader) != 0) return 0;
    if (stat(host, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    ident_t id = ident_of(&st);
    return memcmp(&id, &r->loader_id, sizeof id) == 0;
}

/* The guest's argv pointers (argv[0] first, without the NULL): their count, or -1. */
static long exec_argv(pid_t pid, uint64_t addr, uint64_t *out) {
    long n = 0;
    while (n < ARGV_MAX) {
        size_t want = 4096 - ((addr + n * 8) & 4095);
        if (want > (size_t)(ARGV_MAX - n) * 8) want = (size_t)(ARGV_MAX - n) * 8;
        struct iovec l = {out + n, want}, r = {(void *)(uintptr_t)(addr + n * 8), want};
        if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)want) return -1;
        for (size_t i = 0; i < want / 8; i++, n++)
            if (out[n] == 0) return n;
    }
    return -1;
}

/* execve of a file that does not exist (a PATH search): ENOENT, as ExecPlanner._open_exec
 * answers after enter_execve read argv (a string it cannot read is EFAULT: Python's). */
static int exec_missing(pid_t pid, uint64_t nr, uint64_t argv_ptr) {
    static uint64_t ptrs[ARGV_MAX + 1];
    char buf[PATH_MAX_];
    long argc = argv_ptr ? exec_argv(pid, argv_ptr, ptrs) : 0;
    if (argc < 0) FALL(nr, R_EXEC);
    for (long i = 0; i < argc; i++)
        if (!read_path(pid, ptrs[i], buf)) FALL(nr, R_EXEC);
    if (!fp_skip(pid, -ENOENT)) FALL(nr, R_WRITE);
    return 1;
}

/* Place `len` bytes of `s` below what blob holds (its end is guest address `end`): their
 * guest address, or 0 when the blob is full. */
static uint64_t exec_put(char *blob, size_t *used, uint64_t end, const void *s, size_t len) {
    size_t at = (*used + len + 15) & ~(size_t)15;
    if (at > EXEC_BLOB) return 0;
    *used = at;
    memcpy(blob + EXEC_BLOB - at, s, len);
    return end - at;
}

/* The guest path execve names, made absolute (the cwd mirrored for a relative one) in
 * `key`; `path` as the guest wrote it. 0: Python's. */
static int exec_key(pid_t pid, uint64_t nr, uint64_t ptr, uint64_t sp, char *path, char *key) {
    if (!ptr || (ptr < sp && ptr + 65536 > sp)) FALL(nr, R_POINTER);
    if (!read_path(pid, ptr, path)) FALL(nr, R_READ);
    size_t plen = strlen(path);
    if (!plen || path[plen - 1] == '/') FALL(nr, R_EMPTY);
    if (path[0] == '/') {
        strcpy(key, path);
    } else {
        const cwd_t *c = cwd_slot(pid);
        if (c->pid != pid) FALL(nr, R_BASE);
        size_t bl = strcmp(c->guest, "/") ? strlen(c->guest) : 0;
        if (bl + plen + 2 > KEY_MAX) FALL(nr, R_BASE);
        memcpy(key, c->guest, bl);
        key[bl] = '/';
        strcpy(key + bl + 1, path);
    }
    if (strncmp(key, "/proc/", 6) == 0) FALL(nr, R_PROC);
    return 1;
}

/* The link named `name` to the loader of `r` (comm, ps), or the program itself (static). */
static const char *exec_link(const exec_rec_t *r, const char *name, const char *prog) {
    if (!r->interp) return prog;
    for (int i = 0; i < EXEC_NAMES && r->names[i]; i++)
        if (strcmp(r->names[i], name) == 0) return r->links[i];
    return NULL;
}

/* The argv the kernel gets, built down from the guest's own (read at argv + 6, its count
 * `argc`): a script's "interp [arg] path" in place of its argv[0] (path: the guest's own
 * string at `ptr`), then the loader's words as ExecPlanner._with_loader puts them (the
 * program named by `pkey`, argv[0] kept for --argv0, copied to `argv0` for Python).
 * Returns where the vector starts, or NULL when the blob is full or a string unreadable. */
static uint64_t *exec_vector(pid_t pid, const exec_rec_t *r, const char *interp, const char *arg, uint64_t ptr,
                             const char *pkey, uint64_t *argv, char *blob, size_t *used, uint64_t end, char *argv0) {
    long p = 6;
    if (interp) {
        argv[6] = ptr;
        if (arg && !(argv[--p] = exec_put(blob, used, end, arg, strlen(arg) + 1))) return NULL;
        if (!(argv[--p] = exec_put(blob, used, end, interp, strlen(interp) + 1))) return NULL;
    }
    if (!r->interp) return argv + p;
    uint64_t a0 = argv[p];
    if (interp) strcpy(argv0, interp);
    else if (r->argv0 && !read_path(pid, a0, argv0)) return NULL;
    if (!interp && !(argv[p] = exec_put(blob, used, end, pkey, strlen(pkey) + 1))) return NULL;  /* the program */
    if (r->argv0) {
        argv[--p] = a0;
        if (!(argv[--p] = exec_put(blob, used, end, "--argv0", 8))) return NULL;
    }
    if (!(argv[--p] = exec_put(blob, used, end, r->interp, strlen(r->interp) + 1))) return NULL;
    return argv + p;
}

/* 1: the execve is carried out (registers written, resumed by the caller); 0: Python's. */
static int exec_fast(pid_t pid, uint64_t nr, const uint64_t *args, uint64_t sp) {
    char path[PATH_MAX_], key[KEY_MAX], host[PATH_MAX_], ihost[PATH_MAX_], argv0[PATH_MAX_];
    if (!exec_key(pid, nr, args[0], sp, path, key)) return 0;
    if (!exec_host(key, host)) FALL(nr, R_MISS);
    struct stat st;
    if (stat(host, &st) != 0) {
        if (errno == ENOENT) return exec_missing(pid, nr, args[1]);
        FALL(nr, R_EXEC);
    }
    const char *interp = NULL, *arg = NULL, *prog = host, *pkey = key;
    const exec_rec_t *r = exec_recs[exec_slot(host)];
    if (!r) {  /* a script whose interpreter has a record (_fastscript.c) */
        if (!script_of(host, &st, &interp, &arg, ihost, &st) || !(r = exec_recs[exec_slot(ihost)])) FALL(nr, R_EXEC);
        prog = ihost;
        pkey = interp;
    }
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path, *link = exec_link(r, name, prog);
    if (!link) FALL(nr, R_EXEC);
    exec_done_t *d = &exec_done[(unsigned)pid % EXECS];
    if (d->pid && d->pid != pid) FALL(nr, R_SLOT);
    if (!exec_same_program(r, prog, &st) || (r->interp && !exec_same_loader(r))) FALL(nr, R_EXEC);
    static uint64_t argv[ARGV_MAX + 8];
    long argc = args[1] ? exec_argv(pid, args[1], argv + 6) : -1;
    if (argc < 1) FALL(nr, R_EXEC);  /* no argv[0]: the plan makes one */
    /* the blob below the red zone: the file to execute, then its argv strings and array */
    static char blob[EXEC_BLOB];
    size_t used = 0;
    uint64_t end = (sp - RED_ZONE) & ~(uint64_t)15;
    uint64_t path_addr = exec_put(blob, &used, end, link, strlen(link) + 1), argv_addr = args[1];
    uint64_t *vec = exec_vector(pid, r, interp, arg, args[0], pkey, argv, blob, &used, end, argv0);
    if (!vec || !path_addr) FALL(nr, R_EXEC);
    if (vec != argv + 6 && !(argv_addr = exec_put(blob, &used, end, vec, (size_t)(argv + 7 + argc - vec) * 8)))
        FALL(nr, R_EXEC);  /* (with argv's NULL) */
    struct iovec l = {blob + EXEC_BLOB - used, used}, rv = {(void *)(uintptr_t)(end - used), used};
    if (process_vm_writev(pid, &l, 1, &rv, 1, 0) != (ssize_t)used) FALL(nr, R_WRITE);
    if (ptrace(PTRACE_POKEUSER, pid, arg_off[0], path_addr) != 0) FALL(nr, R_WRITE);
    if (argv_addr != args[1] && ptrace(PTRACE_POKEUSER, pid, arg_off[1], argv_addr) != 0) FALL(nr, R_WRITE);
    exec_done_forget(pid);
    *d = (exec_done_t){pid, strdup(r->guest), r->interp && r->argv0 ? strdup(argv0) : NULL,
                       r->interp ? (r->argv0 ? 4 : 1) : 0, exec_cs(r)};
    return 1;
}

/* exec_record(host, head, want, guest, interp, loader, loader_id, argv0, name, link): bytes
 * throughout, b"" for none (a static program has no interp, loader, name or link). */
static PyObject *exec_record(PyObject *self, PyObject *a) {
    const char *host, *guest, *interp, *loader, *name, *link;
    Py_buffer head;
    unsigned long long dev, ino, size;
    long long mt_s, mt_ns, ct_s, ct_ns;
    Py_ssize_t want;
    int argv0;
    if (!PyArg_ParseTuple(a, "yy*nyyy(KKKLLLL)pyy", &host, &head, &want, &guest, &interp, &loader, &dev, &ino,
                          &size, &mt_s, &mt_ns, &ct_s, &ct_ns, &argv0, &name, &link))
        return NULL;
    if (!*interp) interp = NULL;
    if (head.len > EXEC_HEAD_MAX || want > EXEC_HEAD_MAX || head.len > want || host[0] != '/' ||
        (interp && (interp[0] != '/' || !*loader || !*name || !*link))) {
        PyBuffer_Release(&head);
        return PyErr_Format(PyExc_ValueError, "bad exec record for %s", host);
    }
    size_t i = exec_slot(host);
    exec_rec_t *r = exec_recs[i];
    int same = r && r->head_len == (size_t)head.len && r->head_want == (size_t)want &&
               memcmp(r->head, head.buf, head.len) == 0 && strcmp(r->guest, guest) == 0 &&
               (interp ? r->interp && strcmp(r->interp, interp) == 0 && strcmp(r->loader, loader) == 0 : !r->interp);
    if (!same) {
        if (!r && n_exec_recs >= EXEC_RECORDS / 2) {
            exec_clear_records();  /* (bounded: the records of the programs run since) */
            i = exec_slot(host);
        } else if (r) {
            exec_rec_free(r);
            n_exec_recs--;
        }
        r = calloc(1, sizeof *r);
        if (!r || !(r->host = strdup(host)) || !(r->head = malloc(head.len ? head.len : 1)) ||
            !(r->guest = strdup(guest)) || (interp && (!(r->interp = strdup(interp)) || !(r->loader = strdup(loader))))) {
            exec_rec_free(r);
            exec_recs[i] = NULL;
            PyBuffer_Release(&head);
            return PyErr_NoMemory();
        }
        memcpy(r->head, head.buf, head.len);
        r->head_len = (size_t)head.len;
        r->head_want = (size_t)want;
        exec_recs[i] = r;
        n_exec_recs++;
    }
    PyBuffer_Release(&head);
    r->loader_id = (ident_t){dev, ino, size, mt_s, mt_ns, ct_s, ct_ns};
    r->argv0 = argv0;
    if (interp) {  /* the name's link, the latest first */
        int k = 0;
        while (k < EXEC_NAMES - 1 && r->names[k] && strcmp(r->names[k], name) != 0) k++;
        free(r->names[k]); free(r->links[k]);
        memmove(r->names + 1, r->names, k * sizeof *r->names);
        memmove(r->links + 1, r->links, k * sizeof *r->links);
        r->names[0] = strdup(name);
        r->links[0] = strdup(link);
        if (!r->names[0] || !r->links[0]) return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

static PyObject *exec_taken(PyObject *self, PyObject *a) {
    int pid;
    if (!PyArg_ParseTuple(a, "i", &pid)) return NULL;
    exec_done_t *d = &exec_done[(unsigned)pid % EXECS];
    if (d->pid != pid) Py_RETURN_NONE;
    PyObject *r = Py_BuildValue("(yiy)", d->guest, d->words, d->argv0);
    exec_done_forget(pid);
    return r;
}

static PyObject *exec_forget(PyObject *self, PyObject *a) {
    int pid;
    if (!PyArg_ParseTuple(a, "i", &pid)) return NULL;
    exec_done_forget(pid);
    Py_RETURN_NONE;
}

static PyMethodDef exec_methods[] = {
    {"exec_record", exec_record, METH_VARARGS,
     "exec_record(host, head, want, guest, interp, loader, loader_id, argv0, name, link): a planned execve."},
    {"exec_taken", exec_taken, METH_VARARGS,
     "exec_taken(pid): (exe: bytes, loader words, argv0: bytes | None) of the execve done here, or None."},
    {"exec_forget", exec_forget, METH_VARARGS, "exec_forget(pid): Python carries out this process's execve."},
    {NULL, NULL, 0, NULL},
};
