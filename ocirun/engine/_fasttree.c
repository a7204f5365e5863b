/* The compiled fast path's process-tree stops (included by _fastpath.c after _fastexec.c,
 * whose state it shares: the stops it finished, the children expected, the event queue).
 *
 * Two stops of every fork+exec need nothing of Python when no extension keeps them
 * (set_plain_stops: the ptrace emulation keeps none before it turns the fast path off):
 *  - a signal-delivery stop of a process whose last stop was finished here (Python has
 *    no syscall of it in flight, nothing to resume it otherwise): the signal is
 *    delivered, as _signal_stop does (not SIGSYS: a host filter's, sigsys.py answers it);
 *  - the first stop of a child whose fork event Python has handled (expect_first), or
 *    that was resumed here.
 * And three more are resumed here at once and handed to Python later, in order, before
 * it handles its next stop (set_deferred, on_tree), when no extension looks at them:
 *  - the fork/vfork/clone event (below);
 *  - the exec event of a process that exec'd itself (not a thread in another's place),
 *    with its code segment (the ABI it runs now) and the exe of the execve done here;
 *  - the end of a process other than the first one (whose end ends the run).
 * Python then does what the event's handler does, without the resume.
 *
 * A fork event is resumed here and queued (Q_FORK) when nothing needs it at the stop
 * itself (set_deferred's forks: no extension has a fork hook, or its hook can wait,
 * Extension.fork_hook_later; none keeps a stop) and:
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

/* What Python's fast.forget(pid) clears, done here for an event Python sees later. */
static void tree_forget(int pid) {
    pending_t *p = pending_of(pid);
    if (p->pid == pid) p->pid = 0;
    exec_forget_pid(pid);
    fr_forget_ids(pid);
}

/* The exec event of `pid`, resumed: 1, queued; 0: Python's (a thread's exec, no registers). */
static int queue_exec(pid_t pid) {
    unsigned long former = 0;
    if (ptrace(PTRACE_GETEVENTMSG, pid, 0, &former) != 0 || (pid_t)former != pid) return 0;
    exec_done_t *d = &exec_done[(unsigned)pid % EXECS];
    long cs = d->pid == pid ? d->cs : 0;  /* an x86_64 ELF executed here: its segment is known */
    if (!cs) {
        errno = 0;
        cs = ptrace(PTRACE_PEEKUSER, pid, 17 * 8, 0);  /* user_regs_struct.cs */
        if (errno) return 0;
    }
    tree_event_t *q = &queue[n_queue];
    *q = (tree_event_t){Q_EXEC, pid, cs, NULL, NULL, 0};
    if (d->pid == pid) {  /* the execve done here: its exe and loader words travel with the event */
        q->exe = d->guest; q->argv0 = d->argv0; q->words = d->words;
        *d = (exec_done_t){0, NULL, NULL, 0, 0};
    }
    tree_forget(pid);
    n_queue++;
    ptrace(PTRACE_CONT, pid, 0, 0);
    return 1;
}

/* The end of `pid`: queued (1) unless it is the first process's. */
static int queue_exit(pid_t pid, int status) {
    if (!defer_exit || pid == keep_pid || n_queue >= QUEUE_MAX) return 0;
    tree_forget(pid);
    cwd_forget(pid);
    queue[n_queue++] = (tree_event_t){Q_EXIT, pid, status, NULL, NULL, 0};
    return 1;
}

/* Hand the queued events to Python: on_tree([(kind, pid, value, exe, words, argv0)]) (a fork:
   the parent, the child, None, the clone flags CLONE_FS and CLONE_THREAD, None). */
static int report_tree(void) {
    if (!n_queue) return 1;
    PyObject *list = PyList_New(0);
    for (size_t i = 0; i < n_queue; i++) {
        tree_event_t *q = &queue[i];
        PyObject *e = list ? Py_BuildValue("(iilyiy)", q->kind, q->pid, q->value, q->exe, q->words, q->argv0) : NULL;
        if (!e || PyList_Append(list, e) < 0) Py_CLEAR(list);
        Py_XDECREF(e);
        free(q->exe); free(q->argv0);
    }
    n_queue = 0;
    int ok = hand_over(on_tree, list);
    born_taken();
    return ok;
}

/* After pump's look at a stop of `pid`: finished here (1, resumed) or Python's (0). */
static void plain_note(int pid, int finished) {
    unsigned k = (unsigned)pid % EXECS;
    if (finished) plain[k] = pid;
    else if (plain[k] == pid) plain[k] = 0;
}

static unsigned long long n_tree[5];  /* finished here: signal stops, first stops, exec events, ends, forks */

/* A stop other than a seccomp stop: finished here (1 + its kind in n_tree) or 0 (see the top of this file). */
static int tree_stop_(pid_t pid, int status) {
    if (!plain_stops) return 0;
    if (!WIFSTOPPED(status)) return queue_exit(pid, status) ? 4 : 0;
    unsigned k = (unsigned)pid % EXECS;
    int event = status >> 16, sig = WSTOPSIG(status);
    if (event == PTRACE_EVENT_EXEC) return defer_exec && n_queue < QUEUE_MAX && queue_exec(pid) ? 3 : 0;
    if (event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK || event == PTRACE_EVENT_CLONE)
        return fork_event(pid, event) ? 5 : 0;
    if (event == PTRACE_EVENT_STOP && first[k] == pid) {
        first[k] = 0;
        return ptrace(PTRACE_CONT, pid, 0, 0) == 0 ? 2 : 0;
    }
    if (event == 0 && sig != (SIGTRAP | 0x80) && sig != SIGSYS && plain[k] == pid)  /* (SIGSYS: sigsys.py's) */
        return ptrace(PTRACE_CONT, pid, 0, sig) == 0 ? 1 : 0;
    return 0;
}

static int tree_stop(pid_t pid, int status) {
    int done = tree_stop_(pid, status);
    if (done > 0) n_tree[done - 1]++;
    else if (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_STOP) fork_early(pid);
    return done > 0;
}

static PyObject *set_plain_stops(PyObject *self, PyObject *a) {
    if (!PyArg_ParseTuple(a, "p", &plain_stops)) return NULL;
    Py_RETURN_NONE;
}

static PyObject *set_deferred(PyObject *self, PyObject *a) {
    PyObject *fn;
    if (!PyArg_ParseTuple(a, "pppiO", &defer_exec, &defer_exit, &defer_fork, &keep_pid, &fn)) return NULL;
    Py_XSETREF(on_tree, fn == Py_None ? NULL : (Py_INCREF(fn), fn));
    Py_RETURN_NONE;
}

static PyObject *tree_events(PyObject *self, PyObject *unused) {
    if (!report_tree()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *expect_first(PyObject *self, PyObject *a) {
    int pid;
    if (!PyArg_ParseTuple(a, "i", &pid)) return NULL;
    unsigned k = (unsigned)pid % EXECS;
    if (!plain_stops || !enabled || (first[k] && first[k] != pid)) Py_RETURN_FALSE;
    first[k] = pid;
    Py_RETURN_TRUE;
}

static PyObject *first_expected(PyObject *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    for (int i = 0; out && i < EXECS; i++) {
        PyObject *p = first[i] ? PyLong_FromLong(first[i]) : NULL;
        if (first[i] && (!p || PyList_Append(out, p) < 0)) { Py_XDECREF(p); Py_CLEAR(out); }
        Py_XDECREF(p);
    }
    return out;
}

static PyObject *tree_stats(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(KKKKK)", n_tree[0], n_tree[1], n_tree[2], n_tree[3], n_tree[4]);
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

static PyMethodDef tree_methods[] = {
    {"set_plain_stops", set_plain_stops, METH_VARARGS,
     "set_plain_stops(bool): no extension keeps a signal-delivery stop or a child's first stop."},
    {"set_deferred", set_deferred, METH_VARARGS,
     "set_deferred(exec events, exits, forks, first pid, on_tree): which events are resumed here and handed on later."},
    {"tree_stats", tree_stats, METH_NOARGS, "(signal stops, first stops, exec events, ends, forks) finished here."},
    {"tree_events", tree_events, METH_NOARGS, "Hand the queued events to on_tree now."},
    {"expect_first", expect_first, METH_VARARGS,
     "expect_first(pid): its first stop is resumed here (True), or comes to Python (False)."},
    {"first_expected", first_expected, METH_NOARGS, "The children whose first stop is still expected here."},
    {"born", born_pids, METH_NOARGS,
     "The children forked in the fast path whose events Python has not had yet (any thread may ask)."},
    {"set_fork_pinning", set_fork_pinning, METH_VARARGS,
     "set_fork_pinning(bool): the CPU pinning holds; False: fork events go to Python (it unpins children)."},
    {NULL, NULL, 0, NULL},
};
