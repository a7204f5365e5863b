/* The compiled fast path's fork/vfork/clone event (included by _fastpath.c after
 * _fastexec.c: it uses that file's event queue and expected first stops).
 *
 * A fork event is resumed here at once and handed to Python later, in order with the
 * exec events and ends (Q_FORK, ProcessTree._tree_events), when nothing needs it at the
 * stop itself (set_deferred's forks: no extension has a fork hook or keeps a stop):
 *  - the parent's last stop was finished here (Python has no syscall of it in flight);
 *  - the child's first stop has not gone to Python already (it is expected here then,
 *    as fastexec.expect_first does after Python's fork event);
 *  - a clone's flags are those of an x86_64 call (CLONE_FS: the mirror forgets the
 *    parent's cwd, as for a shared FsState; else the child gets the parent's);
 *  - the CPU pinning has not been released (Python unpins a child forked after that).
 * Until Python has the event, the child is one of born(), which another thread may
 * read while pump runs without the GIL (the CPU-pinning monitor, the signal forwarder
 * ask which processes are the guest's): the list is kept under a mutex, and is
 * emptied only after Python's callback made the children its own tracees.
 */
#include <pthread.h>

#define CLONE_FS_ 0x200
#define CLONE_THREAD_ 0x10000
#define NR_CLONE3 435
#define USER_CS_64 0x33

static pthread_mutex_t born_lock = PTHREAD_MUTEX_INITIALIZER;
static int born[QUEUE_MAX];  /* children forked here that Python does not know yet */
static size_t n_born;
static int forks_pinned;     /* set_fork_pinning: the pinning holds (not released) */
static int early[EXECS];     /* pids whose first stop went to Python before any fork event named them */

/* A PTRACE_EVENT_STOP that goes to Python: if it is a child's first, its parent's fork
 * event must go there too (Python holds the child until then). */
static void fork_early(int pid) { early[(unsigned)pid % EXECS] = pid; }

/* The clone flags of the call that stopped at this clone event (1), as
 * ProcessTree._clone_flags reads them; 0: not an x86_64 call, or unreadable. */
static int clone_flags(pid_t pid, uint64_t *flags) {
    errno = 0;
    long cs = ptrace(PTRACE_PEEKUSER, pid, 17 * 8, 0);
    long nr = ptrace(PTRACE_PEEKUSER, pid, 15 * 8, 0);  /* orig_rax */
    long rdi = ptrace(PTRACE_PEEKUSER, pid, 14 * 8, 0);
    if (errno || cs != USER_CS_64) return 0;
    if (nr != NR_CLONE3) {
        *flags = (uint64_t)rdi;
        return 1;
    }
    struct iovec l = {flags, 8}, r = {(void *)(uintptr_t)rdi, 8};
    return process_vm_readv(pid, &l, 1, &r, 1, 0) == 8;
}

/* The child's mirrored cwd, as _inherit's mirror_cwd gives it (the mirror holds the
 * cwds of unshared FsStates only). */
static void fork_cwd(int parent, int child, uint64_t flags) {
    if (flags & CLONE_FS_) {
        cwd_forget(parent);
        return;
    }
    const cwd_t *p = cwd_slot(parent);
    if (p->pid != parent) return;
    char *g = strdup(p->guest), *h = strdup(p->host);
    if (!g || !h) { free(g); free(h); return; }
    cwd_t *c = cwd_slot(child);
    if (c == p) { free(g); free(h); return; }  /* (the slot is the parent's: Python's, later) */
    cwd_forget(c->pid);
    *c = (cwd_t){child, g, h};
}

/* The fork/vfork/clone event of `pid` (`event`): resumed and queued (1), or Python's (0). */
static int fork_event(pid_t pid, int event) {
    unsigned long child = 0;
    uint64_t flags = 0;
    if (!defer_fork || n_queue >= QUEUE_MAX || plain[(unsigned)pid % EXECS] != pid) return 0;
    if (ptrace(PTRACE_GETEVENTMSG, pid, 0, &child) != 0 || (int)child <= 0) return 0;
    unsigned k = (unsigned)child % EXECS;
    if (early[k] == (int)child) {
        early[k] = 0;
        return 0;
    }
    if (first[k] || (event == PTRACE_EVENT_CLONE && !clone_flags(pid, &flags))) return 0;
    pthread_mutex_lock(&born_lock);
    int ok = forks_pinned && n_born < QUEUE_MAX;
    if (ok) born[n_born++] = (int)child;
    pthread_mutex_unlock(&born_lock);
    if (!ok) return 0;
    fork_cwd(pid, (int)child, flags);
    first[k] = (int)child;
    queue[n_queue++] = (tree_event_t){Q_FORK, pid, (long)child, NULL, NULL, (int)(flags & (CLONE_FS_ | CLONE_THREAD_))};
    ptrace(PTRACE_CONT, pid, 0, 0);
    return 1;
}

/* After Python's callback took the queued events: its tracees include the children. */
static void born_taken(void) {
    pthread_mutex_lock(&born_lock);
    n_born = 0;
    pthread_mutex_unlock(&born_lock);
}

static void fork_reset(void) {
    pthread_mutex_lock(&born_lock);
    n_born = 0;
    forks_pinned = 0;
    pthread_mutex_unlock(&born_lock);
    defer_fork = 0;
    memset(early, 0, sizeof early);
}

static PyObject *born_pids(PyObject *self, PyObject *unused) {
    int pids[QUEUE_MAX];
    pthread_mutex_lock(&born_lock);
    size_t n = n_born;
    memcpy(pids, born, n * sizeof *pids);
    pthread_mutex_unlock(&born_lock);
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; out && i < n; i++) {
        PyObject *p = PyLong_FromLong(pids[i]);
        if (!p) { Py_CLEAR(out); break; }
        PyList_SET_ITEM(out, (Py_ssize_t)i, p);
    }
    return out;
}

static PyObject *set_fork_pinning(PyObject *self, PyObject *a) {
    int on;
    if (!PyArg_ParseTuple(a, "p", &on)) return NULL;
    pthread_mutex_lock(&born_lock);
    forks_pinned = on;
    pthread_mutex_unlock(&born_lock);
    Py_RETURN_NONE;
}

static PyMethodDef fork_methods[] = {
    {"born", born_pids, METH_NOARGS,
     "The children forked in the fast path whose events Python has not had yet (any thread may ask)."},
    {"set_fork_pinning", set_fork_pinning, METH_VARARGS,
     "set_fork_pinning(bool): the CPU pinning holds; False: fork events go to Python (it unpins children)."},
    {NULL, NULL, 0, NULL},
};
