/* The compiled fast path's execve of a script (included by _fastpath.c after _fastexec.c,
 * whose exec_fast asks script_of when a program has no exec record of its own).
 *
 * A script Python executed once through an interpreter that has an exec record (one
 * "#!" line whose interpreter is a native ELF: ExecPlanner.plan's chain of one) leaves
 * a script record (fastexec.note): the script's host file, its first bytes up to the
 * end of the "#!" line (what parse_shebang reads of them), the interpreter's guest path
 * (absolute) and its argument. exec_fast then runs the interpreter as Python would,
 * argv "interp [arg] path ARGS..." with the loader's words in front, while the script
 * is still a regular file the tracer may execute whose first bytes are the record's
 * (read again each time), and the interpreter's translation and record still hold.
 */

typedef struct {
    char *host;          /* the script's host file (the key) */
    unsigned char *head; /* its first bytes, to the end of the "#!" line */
    size_t head_len;
    char *interp, *arg;  /* the interpreter's guest path, its argument (NULL: none) */
} script_rec_t;

static script_rec_t *script_recs[EXEC_RECORDS];
static size_t n_script_recs;

static void script_rec_free(script_rec_t *r) {
    if (!r) return;
    free(r->host); free(r->head); free(r->interp); free(r->arg);
    free(r);
}

static size_t script_slot(const char *host) {
    size_t i = hash_str(host, 1) % EXEC_RECORDS;
    while (script_recs[i] && strcmp(script_recs[i]->host, host) != 0) i = (i + 1) % EXEC_RECORDS;
    return i;
}

static void script_clear(void) {
    for (size_t i = 0; i < EXEC_RECORDS; i++) { script_rec_free(script_recs[i]); script_recs[i] = NULL; }
    n_script_recs = 0;
}

/* The script at `host` (stat `st`) still starts with its record's "#!" line: its
 * interpreter and argument, and the interpreter's host path and stat in `ihost`, `ist`
 * (which may be `st`) (1); 0: Python's. */
static int script_of(const char *host, const struct stat *st, const char **interp, const char **arg, char *ihost,
                     struct stat *ist) {
    const script_rec_t *r = script_recs[script_slot(host)];
    unsigned char buf[EXEC_HEAD_MAX];
    if (!r || !S_ISREG(st->st_mode) || access(host, X_OK) != 0) return 0;
    int fd = open(host, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return 0;
    ssize_t n = pread(fd, buf, r->head_len, 0);
    close(fd);
    if (n != (ssize_t)r->head_len || memcmp(buf, r->head, r->head_len) != 0) return 0;
    if (!exec_host(r->interp, ihost) || stat(ihost, ist) != 0) return 0;
    *interp = r->interp;
    *arg = r->arg;
    return 1;
}

/* script_record(host, head, interp, arg): bytes, b"" for no argument. */
static PyObject *script_record(PyObject *self, PyObject *a) {
    const char *host, *interp, *arg;
    Py_buffer head;
    if (!PyArg_ParseTuple(a, "yy*yy", &host, &head, &interp, &arg)) return NULL;
    if (head.len < 3 || head.len > EXEC_HEAD_MAX || host[0] != '/' || interp[0] != '/') {
        PyBuffer_Release(&head);
        return PyErr_Format(PyExc_ValueError, "bad script record for %s", host);
    }
    size_t i = script_slot(host);
    if (script_recs[i]) {
        script_rec_free(script_recs[i]);
        script_recs[i] = NULL;
        n_script_recs--;
    } else if (n_script_recs >= EXEC_RECORDS / 2) {
        script_clear();  /* (bounded: the records of the scripts run since) */
        i = script_slot(host);
    }
    script_rec_t *r = calloc(1, sizeof *r);
    if (!r || !(r->host = strdup(host)) || !(r->head = malloc((size_t)head.len)) || !(r->interp = strdup(interp)) ||
        (*arg && !(r->arg = strdup(arg)))) {
        script_rec_free(r);
        PyBuffer_Release(&head);
        return PyErr_NoMemory();
    }
    memcpy(r->head, head.buf, (size_t)head.len);
    r->head_len = (size_t)head.len;
    PyBuffer_Release(&head);
    script_recs[i] = r;
    n_script_recs++;
    Py_RETURN_NONE;
}

static PyMethodDef script_methods[] = {
    {"script_record", script_record, METH_VARARGS,
     "script_record(host, head, interp, arg): a script executed through an interpreter that has an exec record."},
    {NULL, NULL, 0, NULL},
};
