/* The engine's compiled fast path (x86_64): the common seccomp stop without the interpreter.
 *
 * pump() waits for the next stop of any tracee. A seccomp stop of a syscall that
 * Python declared pure (set_syscall: one path argument, no handler, no exit stop, no
 * invalidation, no extension) whose path is either absolute and in the mirrored cache,
 * or one plain relative name that needs no rewrite, is finished here: the host path is
 * written below the red zone and the argument register pointed at it, then PTRACE_CONT.
 * Every other stop is returned to Python as (pid, status), as waitpid would.
 *
 * The cache is a mirror: Python pushes (guest, follow) -> host entries that its own
 * result cache holds, and clears the mirror at every invalidation of its caches. Only
 * the thread that calls pump() may call push/clear (the loop runs without the GIL).
 * A syscall the kernel restarts re-enters with our scratch pointer: the guest's own
 * pointer is put back first (as Python's _unrewrite does for its rewrites).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <stdint.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/ptrace.h>

#define NR_MAX 512
#define PATH_MAX_ 4096
#define BUCKETS 65536
#define CACHE_MAX 65536
#define PENDING 1024
#define RED_ZONE 128
#define EVENT_SECCOMP 7
#define AUDIT_ARCH_X86_64_ 0xC000003EU

enum { F_FOLLOW = 1, F_NOFOLLOW, F_FLAG_NOFOLLOW, F_FLAG_FOLLOW, F_OPEN };

typedef struct { uint8_t on, arg, mode, flag_arg, abs_only; uint64_t mask; } spec_t;
typedef struct entry { struct entry *next; uint64_t hash; uint8_t follow; char *guest; char *host; size_t host_len; } entry_t;
typedef struct { int pid; uint64_t nr, scratch, orig; uint8_t arg; } pending_t;

static spec_t specs[NR_MAX];
static entry_t *buckets[BUCKETS];
static size_t n_entries;
static uint32_t used[CACHE_MAX];  /* the non-empty buckets: a clear costs what the cache holds */
static size_t n_used;
static int enabled;
static const long arg_off[6] = {14 * 8, 13 * 8, 12 * 8, 7 * 8, 9 * 8, 8 * 8}; /* rdi rsi rdx r10 r8 r9 */
static pending_t pending[PENDING];
static char **plain_names;  /* relative names that must go to Python (bindings' components) */
static size_t n_plain;
static unsigned long long n_seccomp, n_fast;

static uint64_t hash_str(const char *s, uint8_t follow) {
    uint64_t h = 1469598103934665603ULL ^ follow;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static void cache_clear(void) {
    for (size_t i = 0; i < n_used; i++) {
        entry_t *e = buckets[used[i]];
        while (e) { entry_t *n = e->next; free(e->guest); free(e->host); free(e); e = n; }
        buckets[used[i]] = NULL;
    }
    n_entries = n_used = 0;
}

static const entry_t *cache_get(const char *guest, uint8_t follow) {
    uint64_t h = hash_str(guest, follow);
    for (entry_t *e = buckets[h % BUCKETS]; e; e = e->next)
        if (e->hash == h && e->follow == follow && strcmp(e->guest, guest) == 0) return e;
    return NULL;
}

static int read_path(pid_t pid, uint64_t addr, char *buf) {
    /* page by page (a string may end just before an unmapped page); 1: read, 0: not */
    size_t got = 0;
    while (got < PATH_MAX_) {
        size_t n = 4096 - ((addr + got) & 4095);
        if (n > PATH_MAX_ - got) n = PATH_MAX_ - got;
        struct iovec l = {buf + got, n}, r = {(void *)(uintptr_t)(addr + got), n};
        if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)n) return 0;
        if (memchr(buf + got, 0, n)) return 1;
        got += n;
    }
    return 0;  /* ENAMETOOLONG and the like: Python's business */
}

static int follow_of(pid_t pid, const spec_t *s, const uint64_t *args) {
    uint64_t f = args[s->flag_arg];
    switch (s->mode) {
    case F_FOLLOW: return 1;
    case F_NOFOLLOW: return 0;
    case F_FLAG_NOFOLLOW: return !(f & s->mask);
    case F_FLAG_FOLLOW: return (f & s->mask) != 0;
    case F_OPEN: return !((f & 0400000) || (f & 0300) == 0300);  /* O_NOFOLLOW; O_CREAT|O_EXCL */
    }
    (void)pid;
    return -1;
}

static pending_t *pending_of(int pid) { return &pending[(unsigned)pid % PENDING]; }

static int plain_needs_python(const char *name) {
    if (strchr(name, '/')) return 1;
    for (size_t i = 0; i < n_plain; i++)
        if (strcmp(plain_names[i], name) == 0) return 1;
    return 0;
}

/* 1: the stop is finished (resumed); 0: Python must handle it (nothing changed that it sees) */
static int try_fast(pid_t pid) {
    struct ptrace_syscall_info info;
    if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) <= 0) return 0;
    if (info.op != PTRACE_SYSCALL_INFO_SECCOMP || info.arch != AUDIT_ARCH_X86_64_) return 0;  /* not int 0x80 */
    uint64_t nr = info.seccomp.nr, *args = (uint64_t *)info.seccomp.args;
    pending_t *p = pending_of(pid);
    if (p->pid == pid) {  /* the syscall after one of our rewrites */
        p->pid = 0;
        if (p->nr == nr && args[p->arg] == p->scratch) {  /* restarted: the guest's pointer back */
            if (ptrace(PTRACE_POKEUSER, pid, arg_off[p->arg], p->orig) != 0) return 0;
            args[p->arg] = p->orig;
        }
    }
    if (nr >= NR_MAX || !specs[nr].on) return 0;
    const spec_t *s = &specs[nr];
    uint64_t ptr = args[s->arg], sp = info.stack_pointer;
    if (!ptr || (ptr < sp && ptr + 65536 > sp)) return 0;  /* NULL, or below sp: not a guest string */
    char path[PATH_MAX_];
    if (!read_path(pid, ptr, path)) return 0;
    int follow = follow_of(pid, s, args);
    if (follow < 0 || !path[0]) return 0;
    if (path[0] != '/') {
        /* one plain name, not followed, no binding: the kernel finds the same entry */
        if (s->abs_only) goto resume;
        if (follow || plain_needs_python(path)) return 0;
        goto resume;
    }
    if (strncmp(path, "/proc/", 6) == 0) return 0;
    const entry_t *e = cache_get(path, (uint8_t)follow);
    if (!e) return 0;
    if (strcmp(e->host, path) != 0) {
        if (p->pid && p->pid != pid) return 0;  /* the slot holds another tracee's rewrite */
        uint64_t addr = (sp - RED_ZONE - (e->host_len + 1)) & ~(uint64_t)15;
        struct iovec l = {e->host, e->host_len + 1}, r = {(void *)(uintptr_t)addr, e->host_len + 1};
        if (process_vm_writev(pid, &l, 1, &r, 1, 0) != (ssize_t)(e->host_len + 1)) return 0;
        if (ptrace(PTRACE_POKEUSER, pid, arg_off[s->arg], addr) != 0) return 0;
        *p = (pending_t){pid, nr, addr, ptr, s->arg};
    }
resume:
    n_fast++;
    ptrace(PTRACE_CONT, pid, 0, 0);
    return 1;
}

static PyObject *pump(PyObject *self, PyObject *unused) {
    int status = 0;
    pid_t pid;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        pid = waitpid(-1, &status, __WALL);
        if (pid < 0) { pid = -errno; status = 0; break; }
        if (!enabled || !WIFSTOPPED(status) || (status >> 16) != EVENT_SECCOMP) break;
        n_seccomp++;
        if (!try_fast(pid)) break;
    }
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(ii)", (int)pid, status);
}

static PyObject *push(PyObject *self, PyObject *a) {
    const char *guest, *host;
    int follow;
    if (!PyArg_ParseTuple(a, "yyp", &guest, &host, &follow)) return NULL;
    if (cache_get(guest, (uint8_t)follow)) Py_RETURN_NONE;
    if (n_entries >= CACHE_MAX) cache_clear();
    entry_t *e = calloc(1, sizeof *e);
    if (!e || !(e->guest = strdup(guest)) || !(e->host = strdup(host))) {
        if (e) { free(e->guest); free(e); }
        return PyErr_NoMemory();
    }
    e->follow = (uint8_t)follow;
    e->hash = hash_str(guest, e->follow);
    e->host_len = strlen(host);
    if (!buckets[e->hash % BUCKETS]) used[n_used++] = (uint32_t)(e->hash % BUCKETS);
    e->next = buckets[e->hash % BUCKETS];
    buckets[e->hash % BUCKETS] = e;
    n_entries++;
    Py_RETURN_NONE;
}

static PyObject *clear(PyObject *self, PyObject *unused) { cache_clear(); Py_RETURN_NONE; }

static PyObject *set_syscall(PyObject *self, PyObject *a) {
    unsigned nr, arg, mode, flag_arg, abs_only;
    unsigned long long mask;
    if (!PyArg_ParseTuple(a, "IIIIKI", &nr, &arg, &mode, &flag_arg, &mask, &abs_only)) return NULL;
    if (nr >= NR_MAX || arg > 5 || flag_arg > 5 || mode < F_FOLLOW || mode > F_OPEN)
        return PyErr_Format(PyExc_ValueError, "bad syscall spec for %u", nr);
    specs[nr] = (spec_t){1, (uint8_t)arg, (uint8_t)mode, (uint8_t)flag_arg, (uint8_t)abs_only, mask};
    Py_RETURN_NONE;
}

static PyObject *set_plain_names(PyObject *self, PyObject *seq) {
    PyObject *fast = PySequence_Fast(seq, "a sequence of bytes");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    char **names = calloc((size_t)n + 1, sizeof *names);
    for (Py_ssize_t i = 0; names && i < n; i++) {
        const char *s = PyBytes_AsString(PySequence_Fast_GET_ITEM(fast, i));
        if (!s) { Py_DECREF(fast); free(names); return NULL; }
        names[i] = strdup(s);
    }
    Py_DECREF(fast);
    if (!names) return PyErr_NoMemory();
    for (size_t i = 0; i < n_plain; i++) free(plain_names[i]);
    free(plain_names);
    plain_names = names;
    n_plain = (size_t)n;
    Py_RETURN_NONE;
}

static PyObject *set_enabled(PyObject *self, PyObject *a) {
    int on;
    if (!PyArg_ParseTuple(a, "p", &on)) return NULL;
    enabled = on;
    if (!on) { memset(specs, 0, sizeof specs); memset(pending, 0, sizeof pending); cache_clear(); }
    Py_RETURN_NONE;
}

static PyObject *forget(PyObject *self, PyObject *a) {
    int pid;
    if (!PyArg_ParseTuple(a, "i", &pid)) return NULL;
    pending_t *p = pending_of(pid);
    if (p->pid == pid) p->pid = 0;
    Py_RETURN_NONE;
}

static PyObject *stats(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(KKn)", n_seccomp, n_fast, (Py_ssize_t)n_entries);
}

static PyMethodDef methods[] = {
    {"pump", pump, METH_NOARGS, "Wait for the next stop Python must see: (pid, status) or (-errno, 0)."},
    {"push", push, METH_VARARGS, "push(guest: bytes, host: bytes, follow: bool): mirror one cached translation."},
    {"clear", clear, METH_NOARGS, "Forget every mirrored translation (an invalidation)."},
    {"set_syscall", set_syscall, METH_VARARGS, "set_syscall(nr, arg, mode, flag_arg, mask, abs_only): a pure syscall."},
    {"set_plain_names", set_plain_names, METH_O, "Relative names that always go to Python."},
    {"set_enabled", set_enabled, METH_VARARGS, "Turn the fast path on or off (off: forgets all)."},
    {"forget", forget, METH_VARARGS, "forget(pid): a tracee exec'd or exited."},
    {"stats", stats, METH_NOARGS, "(seccomp stops seen, stops finished here, cache entries)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "ocirun.engine._fastpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) { return PyModule_Create(&module); }
