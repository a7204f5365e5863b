/* The compiled fast path's directories (included by _fastpath.c: it uses that file's mirrors).
 *
 * A dirfd the guest opened on a directory below one whose View.to_guest is mirrored
 * (push_dir) needs no trip to Python for its own: to_guest is lexical (the longest
 * binding by host path, then the rootfs prefix), so the guest path of PARENT/NAME is
 * the parent's plus /NAME unless PARENT/NAME is itself where a binding's host path,
 * the glue tree's root or the socket aliases' scratch directory lies (set_dir_stops:
 * the bindings' host paths, and the name prefixes of the tracer's own directories,
 * whose to_guest is not lexical). The result is mirrored as Python's push_dir would.
 *
 * /proc/self/fd/N as a whole path (gnulib's fchmodat and the like on an O_PATH fd) is
 * what Python hands to the kernel (as /proc/TGID/fd/N: the same object) when the
 * guest's /proc is the host's and no binding lies below it (set_proc_fd).
 *
 * rmdir by a dirfd and a plain name (unlinkat with AT_REMOVEDIR: rm -r) is let through
 * as PathArgs.invalidate has it: the caches forget the directory's host path (and all
 * below it) at the entry and again at the exit (another tracee may have cached the old
 * state meanwhile), whose stop comes back here (resumed with PTRACE_SYSCALL); those still
 * to come when the fast path is turned off are Python's (take_rmdirs).
 */

/* dir_host's walk met a name that does not exist at out[..hl]: the names still below
 * it (names[n-1] .. names[0]) go after it as they are (1), if the result fits. */
static int rest_missing(char *out, size_t hl, const char **names, int n, int *missing) {
    while (n--) {
        size_t nl = strlen(names[n]);
        if (hl + nl + 2 > PATH_MAX_) return 0;
        out[hl] = '/';
        memcpy(out + hl + 1, names[n], nl + 1);
        hl += nl + 1;
    }
    *missing = 1;
    return 1;
}

static char *root_host;  /* the translation of "/" (set_root): kept in the mirror through every clear */

/* After each clear, the root's translation is mirrored again: it does not change while the
 * fast path runs (the bindings are fixed, a new root view turns the fast path off), and
 * what lies below it is derived again, walked as the translator walks (dir_host). */
static void root_keep(void) {
    if (root_host) table_put(&cache, "/", root_host, 1);
}

static PyObject *set_root(PyObject *self, PyObject *a) {
    const char *host;
    if (!PyArg_ParseTuple(a, "y", &host)) return NULL;
    free(root_host);
    if (!(root_host = strdup(host))) return PyErr_NoMemory();
    root_keep();
    Py_RETURN_NONE;
}

static char **dir_stops;        /* host paths whose to_guest is not derived from the parent's */
static size_t n_dir_stops;
static char **dir_private;      /* name prefixes of the tracer's own directories */
static size_t n_dir_private;
static int proc_fd;             /* /proc/self/fd/N goes to the kernel as it is */

/* The mirrored to_guest of host directory `host` (from readlink of /proc/PID/fd/N:
 * canonical), derived from the nearest mirrored ancestor's (at most WALK_UP levels
 * up), each level mirrored on the way; NULL: Python's. */
static const entry_t *dir_guest(const char *host, int depth) {
    const entry_t *e = table_get(&dirs, host, 0);
    if (e || depth == WALK_UP) return e;
    const char *slash = strrchr(host, '/');
    if (!slash || !slash[1] || in_list(dir_stops, n_dir_stops, host, strlen(host))) return NULL;
    const char *name = slash + 1;
    for (size_t i = 0; i < n_dir_private; i++)
        if (strncmp(name, dir_private[i], strlen(dir_private[i])) == 0) return NULL;
    char parent[PATH_MAX_], guest[KEY_MAX];
    size_t plen = slash == host ? 1 : (size_t)(slash - host);
    if (plen >= sizeof parent) return NULL;
    memcpy(parent, host, plen);
    parent[plen] = 0;
    const entry_t *p = dir_guest(parent, depth + 1);
    if (!p) return NULL;
    size_t gl = strcmp(p->host, "/") ? strlen(p->host) : 0;  /* (dirs: host -> guest, kept in e->host) */
    if (gl + strlen(name) + 2 > sizeof guest) return NULL;
    memcpy(guest, p->host, gl);
    guest[gl] = '/';
    strcpy(guest + gl + 1, name);
    if (!table_put(&dirs, host, guest, 0)) return NULL;
    return table_get(&dirs, host, 0);
}

/* "/proc/self/fd/N", N digits only, when the kernel may have it as it is. */
static int proc_fd_self(const char *path) {
    if (!proc_fd || strncmp(path, "/proc/self/fd/", 14) != 0 || !path[14]) return 0;
    for (const char *p = path + 14; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

typedef struct { int pid; char *host; } rmdir_t;
static rmdir_t rmdirs[PENDING];  /* per tracee (pid % PENDING): an rmdir whose exit is to come */
static int resume_exit;          /* try_fast resumes with PTRACE_SYSCALL (the rmdir's exit stop) */

static void gone_add(char *host) {  /* (owned, NULL: out of memory) */
    if (host && n_gone < GONE_MAX) gone[n_gone++] = host;
    else { free(host); gone_overflow = 1; }
}

static void rmdir_forget(int pid) {
    rmdir_t *r = &rmdirs[(unsigned)pid % PENDING];
    if (r->pid != pid) return;
    free(r->host);
    *r = (rmdir_t){0, NULL};
}

/* At the entry of an rmdir of `host`: its exit is to come back here (1), or 0: the slot is taken. */
static int rmdir_note(pid_t pid, const char *host) {
    rmdir_t *r = &rmdirs[(unsigned)pid % PENDING];
    char *h;
    if (r->pid || !(h = strdup(host))) return 0;
    *r = (rmdir_t){pid, h};
    resume_exit = 1;
    return 1;
}

/* The exit stop of an rmdir let through here (1: finished, resumed); else 0, nothing taken. */
static int rmdir_exit(pid_t pid, int status) {
    rmdir_t *r = &rmdirs[(unsigned)pid % PENDING];
    if (r->pid != pid) return 0;
    struct ptrace_syscall_info info;
    if (!WIFSTOPPED(status) || WSTOPSIG(status) != (SIGTRAP | 0x80) ||
        ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) <= 0 || info.op != PTRACE_SYSCALL_INFO_EXIT) {
        rmdir_forget(pid);  /* killed on the way: no exit to invalidate at, as in Python */
        return 0;
    }
    if (info.exit.rval >= 0) {  /* (PathArgs: at the exit of a call that did something) */
        cache_clear();
        gone_add(r->host);
        r->host = NULL;
    }
    rmdir_forget(pid);
    ptrace(PTRACE_CONT, pid, 0, 0);
    return 1;
}

static void dirs_reset(void) {
    proc_fd = 0;
    free(root_host);
    root_host = NULL;
    table_clear(&cache);  /* (the root's, put back by the clear before) */
    resume_exit = 0;
    for (int i = 0; i < PENDING; i++) rmdir_forget(rmdirs[i].pid);
}

/* Before the fast path is turned off: the rmdirs whose exit is to come, [(pid, host)],
 * for Python's loop to invalidate at (fastpath.stop); forgotten here. */
static PyObject *take_rmdirs(PyObject *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    for (int i = 0; out && i < PENDING; i++) {
        if (!rmdirs[i].pid) continue;
        PyObject *t = Py_BuildValue("(iy)", rmdirs[i].pid, rmdirs[i].host);
        if (!t || PyList_Append(out, t) < 0) Py_CLEAR(out);
        Py_XDECREF(t);
        rmdir_forget(rmdirs[i].pid);
    }
    return out;
}

static PyObject *set_dir_stops(PyObject *self, PyObject *a) {
    PyObject *stops, *private;
    if (!PyArg_ParseTuple(a, "OO", &stops, &private)) return NULL;
    if (!set_strings(stops, &dir_stops, &n_dir_stops) || !set_strings(private, &dir_private, &n_dir_private))
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *set_proc_fd(PyObject *self, PyObject *a) {
    if (!PyArg_ParseTuple(a, "p", &proc_fd)) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef dirs_methods[] = {
    {"set_dir_stops", set_dir_stops, METH_VARARGS,
     "set_dir_stops(hosts, prefixes): where a dirfd's to_guest is not its parent's plus its name."},
    {"set_proc_fd", set_proc_fd, METH_VARARGS, "set_proc_fd(bool): /proc/self/fd/N goes to the kernel as it is."},
    {"set_root", set_root, METH_VARARGS, "set_root(host: bytes): the translation of / (kept through clears)."},
    {"take_rmdirs", take_rmdirs, METH_NOARGS, "[(pid, host)]: the rmdirs whose exit is to come (now Python's)."},
    {NULL, NULL, 0, NULL},
};
