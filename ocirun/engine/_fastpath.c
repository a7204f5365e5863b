/* The engine's compiled fast path (x86_64): the common seccomp stop without the interpreter.
 *
 * pump() waits for the next stop of any tracee. A seccomp stop of a syscall that
 * Python declared pure (set_syscall: one path argument, no handler, no exit stop, no
 * invalidation, no extension) is finished here when its translation is known:
 *  - a plain relative name that is not followed and names no binding goes untouched;
 *  - otherwise the guest path is made absolute as PathArgs.translate does (the dirfd's
 *    host directory read from /proc/PID/fd/N and mapped back by a mirrored to_guest
 *    memo; AT_FDCWD: the guest cwd Python mirrored for that process), then looked up
 *    in a mirror of the root translator's result cache; on a miss, a clean path whose
 *    parent directory's followed translation is mirrored is the parent's host path
 *    plus the name (the translator's own warm shortcut), when the name names no
 *    binding and, if followed, is no symlink (one lstat);
 *  - opens of a directory whose listing Python fixes up (set_listed) go to Python;
 *    getdents64 is let through but on an fd number that such a directory has open in
 *    some process (set_listing: fd numbers only, whichever process; Python sorts it out).
 * The host path is written below the red zone and the argument register pointed at
 * it (unless the kernel would resolve the guest's string to the same path), then
 * PTRACE_CONT. Every other stop is returned to Python as (pid, status), as waitpid
 * would, with the syscall information already read kept for it (took_info).
 *
 * Under -0 the stat family and the id getters are answered in _fakeroot.c (fr_handles/fr_stop).
 *
 * The caches are mirrors: Python pushes what its own caches hold and clears the
 * mirror at every invalidation of its caches. Only the thread that calls pump() may
 * call the other functions (the loop runs without the GIL). A syscall the kernel
 * restarts re-enters with our scratch pointer: the guest's own pointer is put back
 * first (as Python's _unrewrite does for its rewrites).
 */
#include "_fastpath.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/ptrace.h>

#define KEY_MAX (2 * PATH_MAX_ + 2)
#define BUCKETS 65536
#define CACHE_MAX 65536
#define PENDING 1024
#define CWDS 1024
#define RED_ZONE 128
#define EVENT_SECCOMP 7
#define AUDIT_ARCH_X86_64_ 0xC000003EU
#define WALK_UP 8 /* directories derive() walks below a mirrored one */

#define AT_REMOVEDIR_ 0x200
#define GONE_MAX 4096

typedef struct entry { struct entry *next; uint64_t hash; uint8_t follow; char *guest; char *host; size_t host_len; } entry_t;
typedef struct { int pid; uint64_t nr, scratch, orig; uint8_t arg; } pending_t;
typedef struct { int pid; char *guest, *host; } cwd_t;

static spec_t specs[NR_MAX];
/* a bounded string -> string hash table; clearing it costs what it holds */
typedef struct { entry_t *buckets[BUCKETS]; uint32_t used[CACHE_MAX]; size_t n_entries, n_used; } table_t;
static table_t cache;  /* (guest path, follow) -> host path: the translator's result cache */
static table_t dirs;   /* host directory -> guest path: View.to_guest (constant while the fast path runs) */
static int enabled;
#define LISTING_FDS 1024
static uint8_t listing[LISTING_FDS / 8];  /* fd numbers of open listed directories, any process */
static int listing_high;                  /* one of them is >= LISTING_FDS: those all go to Python */

static int fd_listing(uint64_t arg) {
    int fd = (int)arg;
    if (fd < 0) return 0;  /* EBADF from the kernel, nothing to fix up */
    if (fd >= LISTING_FDS) return listing_high;
    return listing[fd / 8] >> (fd % 8) & 1;
}
static const long arg_off[6] = {14 * 8, 13 * 8, 12 * 8, 7 * 8, 9 * 8, 8 * 8}; /* rdi rsi rdx r10 r8 r9 */
static pending_t pending[PENDING];
static cwd_t cwds[CWDS];
static char **plain_names;  /* relative names that must go to Python (bindings' components) */
static size_t n_plain;
static char **listed;       /* host directories whose opens Python notes */
static size_t n_listed;
static unsigned char *info_buf;  /* Python's ptrace_syscall_info buffer (set_info_buffer) */
static size_t info_size;
static int info_pid;             /* whose information info_buf holds (0: nobody's) */
static unsigned long long n_seccomp, n_fast;
static char *gone[GONE_MAX];  /* host paths unlinked here, for Python's caches (pump's callback) */
static size_t n_gone;
static int gone_overflow;
static PyObject *on_gone;
static const char *reason_names[N_REASONS] = {"info", "not pure", "pointer", "read", "empty", "base",
                                              "proc", "miss", "listed", "slot", "write", "unlink",
                                              "fake-root poll", "fake-root stat", "exec", "fake-root check",
                                              "fake-root ids"};
static unsigned long long fallback[NR_MAX + 1][N_REASONS];
#define FALL(nr, r) do { fallback[(nr) < NR_MAX ? (nr) : NR_MAX][r]++; return 0; } while (0)

int fp_fall(uint64_t nr, int reason) { FALL(nr, reason); }

static uint64_t hash_str(const char *s, uint8_t follow) {
    uint64_t h = 1469598103934665603ULL ^ follow;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static void table_clear(table_t *t) {
    for (size_t i = 0; i < t->n_used; i++) {
        entry_t *e = t->buckets[t->used[i]];
        while (e) { entry_t *n = e->next; free(e->guest); free(e->host); free(e); e = n; }
        t->buckets[t->used[i]] = NULL;
    }
    t->n_entries = t->n_used = 0;
}

static void root_keep(void);  /* _fastdirs.c */
static void cache_clear(void) { table_clear(&cache); root_keep(); }

static const entry_t *table_get(const table_t *t, const char *guest, uint8_t follow) {
    uint64_t h = hash_str(guest, follow);
    for (entry_t *e = t->buckets[h % BUCKETS]; e; e = e->next)
        if (e->hash == h && e->follow == follow && strcmp(e->guest, guest) == 0) return e;
    return NULL;
}

static const entry_t *cache_get(const char *guest, uint8_t follow) { return table_get(&cache, guest, follow); }

static int table_put(table_t *t, const char *guest, const char *host, uint8_t follow) {
    if (table_get(t, guest, follow)) return 1;
    if (t->n_entries >= CACHE_MAX) table_clear(t);
    entry_t *e = calloc(1, sizeof *e);
    if (!e || !(e->guest = strdup(guest)) || !(e->host = strdup(host))) {
        if (e) { free(e->guest); free(e); }
        return 0;
    }
    e->follow = follow;
    e->hash = hash_str(guest, follow);
    e->host_len = strlen(host);
    size_t b = e->hash % BUCKETS;
    if (!t->buckets[b]) t->used[t->n_used++] = (uint32_t)b;
    e->next = t->buckets[b];
    t->buckets[b] = e;
    t->n_entries++;
    return 1;
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

int fp_follow(const spec_t *s, const uint64_t *args) {
    uint64_t f = args[s->flag_arg];
    switch (s->mode) {
    case F_FOLLOW: return 1;
    case F_NOFOLLOW: return 0;
    case F_FLAG_NOFOLLOW: return !(f & s->mask);
    case F_FLAG_FOLLOW: return (f & s->mask) != 0;
    case F_OPEN: return !((f & 0400000) || (f & 0300) == 0300);  /* O_NOFOLLOW; O_CREAT|O_EXCL */
    }
    return -1;
}

static pending_t *pending_of(int pid) { return &pending[(unsigned)pid % PENDING]; }
static cwd_t *cwd_slot(int pid) { return &cwds[(unsigned)pid % CWDS]; }

static int in_list(char **list, size_t n, const char *s, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strncmp(list[i], s, len) == 0 && list[i][len] == 0) return 1;
    return 0;
}

static int plain_needs_python(const char *name) {
    return strchr(name, '/') || in_list(plain_names, n_plain, name, strlen(name));
}

/* A host path as DirListing.note_open compares it: no trailing '/' or '/.' */
static int is_listed(const char *host, size_t len) {
    while (len > 1 && host[len - 1] == '/') len--;
    if (len > 2 && host[len - 1] == '.' && host[len - 2] == '/') len -= 2;
    if (len == 0) len = 1;
    return in_list(listed, n_listed, host, len);
}

static int set_strings(PyObject *seq, char ***list, size_t *count);
#include "_fastdirs.c"

/* The guest directory a relative path starts from, as PathArgs.base_dirs finds it:
 * 1 with `guest` and `host` (host may be ""), 0 when only Python knows. */
static int base_of(pid_t pid, const spec_t *s, const uint64_t *args, const char **guest, char *host) {
    int fd = s->dirfd == NO_DIRFD ? AT_FDCWD_ : (int)(int32_t)args[s->dirfd];
    if (fd == AT_FDCWD_) {
        const cwd_t *c = cwd_slot(pid);
        if (c->pid != pid || strlen(c->host) >= PATH_MAX_) return 0;
        *guest = c->guest;
        strcpy(host, c->host);
        return 1;
    }
    if (fd < 0) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/%d/fd/%d", (int)pid, fd);
    ssize_t n = readlink(link, host, PATH_MAX_ - 1);
    if (n <= 0 || n >= PATH_MAX_ - 1 || host[0] != '/') return 0;  /* (a full buffer may be cut short) */
    host[n] = 0;
    if (n >= 10 && strcmp(host + n - 10, " (deleted)") == 0) return 0;
    const entry_t *e = dir_guest(host, 0);  /* _fastdirs.c */
    if (!e) return 0;
    *guest = e->host;
    return 1;
}

/* No '//', '.' or '..' component, no trailing '/': the walk meets only plain names. */
static int clean(const char *key) {
    for (const char *p = key; *p; p++) {
        if (*p != '/') continue;
        if (p[1] == '/' || p[1] == 0) return 0;
        if (p[1] == '.' && (p[2] == '/' || p[2] == 0 || (p[2] == '.' && (p[3] == '/' || p[3] == 0)))) return 0;
    }
    return 1;
}

/* The followed translation of clean directory `dir` ("" for the root), without a
 * trailing '/': mirrored, or, as the translator's walk finds it, a mirrored ancestor's
 * plus the names below it when each is a real directory (at most WALK_UP of them,
 * one lstat each; a binding's name, a symlink or anything else: 0, Python walks).
 * With `missing`, a name that does not exist ends the walk too (*missing = 1), the
 * names below it as given: the kernel fails that path with ENOENT there, as Python's
 * translator does (a locale or PATH search's tries), and it is not to be cached. */
static int dir_host(const char *dir, char *out, int *missing) {
    char buf[KEY_MAX];
    const char *names[WALK_UP];
    int n = 0;
    size_t len = strlen(dir);
    const entry_t *e;
    if (len >= sizeof buf) return 0;
    memcpy(buf, dir, len + 1);
    while (!(e = cache_get(len ? buf : "/", 1))) {
        char *slash = strrchr(buf, '/');
        if (!len || !slash || n == WALK_UP || in_list(plain_names, n_plain, slash + 1, strlen(slash + 1))) return 0;
        names[n++] = slash + 1;
        *slash = 0;
        len = (size_t)(slash - buf);
    }
    size_t hl = e->host_len;
    while (hl && e->host[hl - 1] == '/') hl--;
    if (hl >= PATH_MAX_) return 0;
    memcpy(out, e->host, hl);
    out[hl] = 0;
    while (n--) {
        size_t nl = strlen(names[n]);
        struct stat st;
        if (hl + nl + 2 > PATH_MAX_) return 0;
        out[hl] = '/';
        memcpy(out + hl + 1, names[n], nl + 1);
        hl += nl + 1;
        if (strncmp(out, "/proc/", 6) == 0) return 0;
        if (lstat(out, &st) != 0) return errno == ENOENT && missing && rest_missing(out, hl, names, n, missing);
        if (!S_ISDIR(st.st_mode)) return 0;
        /* remembered as the walk's result (a real directory): the next name in it costs no lstat */
        size_t gl = (size_t)(names[n] - buf) + nl;  /* buf[gl] is already 0 (a cut, or the end) */
        memcpy(buf, dir, gl);  /* (the names still to walk lie past gl) */
        table_put(&cache, buf, out, 1);
    }
    return 1;
}

/* A miss: the parent directory's followed translation plus the name (PathTranslator._leaf);
 * with `missing`, also through a directory that does not exist (dir_host). */
static int derive_(const char *key, int follow, char *out, int *missing) {
    const char *slash = strrchr(key, '/'), *name = slash + 1;
    if (!clean(key) || in_list(plain_names, n_plain, name, strlen(name))) return 0;
    char parent[KEY_MAX];
    size_t plen = (size_t)(slash - key);
    memcpy(parent, key, plen);
    parent[plen] = 0;
    if (!dir_host(parent, out, missing)) return 0;
    size_t hlen = strlen(out);
    if (hlen + strlen(name) + 2 > PATH_MAX_) return 0;
    out[hlen] = '/';
    strcpy(out + hlen + 1, name);
    if (strncmp(out, "/proc/", 6) == 0) return 0;
    if (follow && !(missing && *missing)) {
        struct stat st;
        if (lstat(out, &st) == 0 ? S_ISLNK(st.st_mode) : errno != ENOENT) return 0;
    }
    return 1;
}

static int derive(const char *key, int follow, char *out) { return derive_(key, follow, out, NULL); }

static int rewrite(pid_t pid, uint64_t nr, const spec_t *s, uint64_t ptr, uint64_t sp, const char *host) {
    pending_t *p = pending_of(pid);
    size_t len = strlen(host) + 1;
    if (p->pid && p->pid != pid) FALL(nr, R_SLOT);  /* the slot holds another tracee's rewrite */
    uint64_t addr = (sp - RED_ZONE - len) & ~(uint64_t)15;
    struct iovec l = {(void *)host, len}, r = {(void *)(uintptr_t)addr, len};
    if (process_vm_writev(pid, &l, 1, &r, 1, 0) != (ssize_t)len) FALL(nr, R_WRITE);
    if (ptrace(PTRACE_POKEUSER, pid, arg_off[s->arg], addr) != 0) FALL(nr, R_WRITE);
    *p = (pending_t){pid, nr, addr, ptr, s->arg};
    return 1;
}

/* The guest's path string at `ptr` (1), or 0: Python reads it. */
int fp_guest_path(pid_t pid, uint64_t nr, uint64_t ptr, uint64_t sp, char *path) {
    if (!ptr || (ptr < sp && ptr + 65536 > sp)) FALL(nr, R_POINTER);  /* NULL, or below sp: not a guest string */
    if (!read_path(pid, ptr, path)) FALL(nr, R_READ);
    return 1;
}

/* The host path of guest `path` (1), as PathArgs.translate finds it, or 0: only Python
 * knows. A relative one starts from `base` (set, with its host path `base_host`, which
 * may be ""; NULL for an absolute path). */
int fp_host_path(pid_t pid, uint64_t nr, const spec_t *s, const uint64_t *args, const char *path, int follow,
                 const char **base, char *base_host, char *host) {
    char key[KEY_MAX];
    *base = NULL;
    if (path[0] != '/') {
        if (!base_of(pid, s, args, base, base_host)) FALL(nr, R_BASE);
        if (strlen(*base) + strlen(path) + 2 > KEY_MAX) FALL(nr, R_BASE);
        size_t bl = strcmp(*base, "/") ? strlen(*base) : 0;
        memcpy(key, *base, bl);
        key[bl] = '/';
        strcpy(key + bl + 1, path);
    } else {
        strcpy(key, path);
    }
    if (strncmp(key, "/proc/", 6) == 0) FALL(nr, R_PROC);
    const entry_t *e = cache_get(key, (uint8_t)follow);
    if (e) {
        if (e->host_len >= PATH_MAX_) FALL(nr, R_MISS);
        memcpy(host, e->host, e->host_len + 1);
        return 1;
    }
    int missing = 0;
    if (!derive_(key, follow, host, &missing)) FALL(nr, R_MISS);
    /* remembered as Python would have cached it: the same invalidations clear it
     * (every one clears the whole mirror), and the next lookup is a hit */
    if (!missing) table_put(&cache, key, host, (uint8_t)follow);
    return 1;
}

/* 1: the path is handled (rewritten or left as is); 0: Python must handle the stop */
static int translate(pid_t pid, uint64_t nr, const spec_t *s, const uint64_t *args, uint64_t sp) {
    uint64_t ptr = args[s->arg];
    char path[PATH_MAX_], base_host[PATH_MAX_], host[PATH_MAX_];
    if (!fp_guest_path(pid, nr, ptr, sp, path)) return 0;
    int follow = fp_follow(s, args);
    if (follow < 0 || !path[0]) FALL(nr, R_EMPTY);
    const char *base = NULL;
    if (proc_fd_self(path)) return !fr_guarded(nr) || fp_fall(nr, R_PROC);  /* _fastdirs.c */
    if (path[0] != '/') {
        if (s->abs_only) return 1;
        if (!follow && !plain_needs_python(path))  /* the kernel finds the same entry */
            return !fr_guarded(nr) || fr_guard(nr, s, args, NULL);
    }
    if (!fp_host_path(pid, nr, s, args, path, follow, &base, base_host, host)) return 0;
    if (fr_guarded(nr) && !fr_guard(nr, s, args, host)) return 0;
    if (s->listed && is_listed(host, strlen(host))) FALL(nr, R_LISTED);
    if (!base) {
        if (strcmp(host, path) == 0) return 1;
    } else if (base_host[0]) {  /* the kernel would build the same string from the dirfd */
        size_t bl = strcmp(base_host, "/") ? strlen(base_host) : 0;
        if (strncmp(host, base_host, bl) == 0 && host[bl] == '/' && strcmp(host + bl + 1, path) == 0) return 1;
    }
    return rewrite(pid, nr, s, ptr, sp, host);
}

/* Skip the syscall at this seccomp stop: the guest sees `result` (Syscall.skip). */
int fp_skip(pid_t pid, long result) {
    return ptrace(PTRACE_POKEUSER, pid, 15 * 8, -1L) == 0 && ptrace(PTRACE_POKEUSER, pid, 10 * 8, result) == 0;
}

/* unlinkat(dirfd, name, 0) of a plain name that is no directory or symlink: the kernel
 * finds the entry without a rewrite, and the caches forget its host path at the entry,
 * as PathArgs.invalidate does for a plain file (no exit stop): the mirror at once,
 * Python's before it handles its next stop (pump hands the paths to on_gone). With
 * AT_REMOVEDIR, of a directory: at its exit too (_fastdirs.c: rmdir_note). */
static int unlink_fast(pid_t pid, uint64_t nr, const spec_t *s, const uint64_t *args, uint64_t sp) {
    uint64_t ptr = args[s->arg];
    int dir = (args[2] & AT_REMOVEDIR_) != 0;
    if (!ptr || (ptr < sp && ptr + 65536 > sp)) FALL(nr, R_POINTER);
    char name[PATH_MAX_], host[PATH_MAX_];
    const char *base;
    if (!read_path(pid, ptr, name)) FALL(nr, R_READ);
    if (!name[0] || plain_needs_python(name)) FALL(nr, R_UNLINK);
    if (!base_of(pid, s, args, &base, host) || !host[0]) FALL(nr, R_BASE);
    size_t hl = strcmp(host, "/") ? strlen(host) : 0;
    if (hl + strlen(name) + 2 > PATH_MAX_) FALL(nr, R_UNLINK);
    host[hl] = '/';
    strcpy(host + hl + 1, name);
    struct stat st;
    if (lstat(host, &st) == 0 ? (dir ? !S_ISDIR(st.st_mode) : S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode))
                              : errno != ENOENT)
        FALL(nr, R_UNLINK);
    if (dir && !rmdir_note(pid, host)) FALL(nr, R_SLOT);
    gone_add(strdup(host));
    cache_clear();
    return 1;
}

/* Call Python's callback `fn` (if set) with `arg`, which it consumes; 0 if the call raised
   or `arg` could not be built (NULL). */
static int hand_over(PyObject *fn, PyObject *arg) {
    if (!arg) return 0;
    PyObject *r = fn ? PyObject_CallOneArg(fn, arg) : (Py_INCREF(Py_None), Py_None);
    Py_DECREF(arg);
    Py_XDECREF(r);
    return r != NULL;
}

/* Hand the paths unlinked here to Python (on_gone(list of bytes), None: forget all). */
static int report_gone(void) {
    if (!n_gone && !gone_overflow) return 1;
    PyObject *arg = gone_overflow ? (Py_INCREF(Py_None), Py_None) : PyList_New(0);
    for (size_t i = 0; i < n_gone; i++) {
        PyObject *b = arg != Py_None ? PyBytes_FromString(gone[i]) : NULL;
        if (b) { PyList_Append(arg, b); Py_DECREF(b); }
        free(gone[i]);
    }
    n_gone = 0;
    gone_overflow = 0;
    return hand_over(on_gone, arg);
}

#include "_fastexec.c"
#include "_fasttree.c"
#include "_fastscript.c"

/* 1: the stop is finished (resumed); 0: Python must handle it (nothing changed that it sees) */
static int try_fast(pid_t pid) {
    struct ptrace_syscall_info info;
    if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) <= 0) FALL(0, R_INFO);
    if (info.op != PTRACE_SYSCALL_INFO_SECCOMP || info.arch != AUDIT_ARCH_X86_64_) FALL(0, R_INFO);  /* not int 0x80 */
    uint64_t nr = info.seccomp.nr, *args = (uint64_t *)info.seccomp.args;
    pending_t *p = pending_of(pid);
    if (p->pid == pid) {  /* the syscall after one of our rewrites */
        p->pid = 0;
        if (p->nr == nr && args[p->arg] == p->scratch) {  /* restarted: the guest's pointer back */
            if (ptrace(PTRACE_POKEUSER, pid, arg_off[p->arg], p->orig) != 0) FALL(nr, R_INFO);
            args[p->arg] = p->orig;
        }
    }
    int ok = 0;
    if (fr_handles(nr))
        ok = fr_stop(pid, nr, args, info.stack_pointer);  /* -0's stat family, id getters (_fakeroot.c) */
    else if (nr >= NR_MAX || !specs[nr].on)
        fallback[nr < NR_MAX ? nr : NR_MAX][R_NOT_PURE]++;
    else if (specs[nr].mode == F_UNLINK)
        ok = unlink_fast(pid, nr, &specs[nr], args, info.stack_pointer);
    else if (specs[nr].mode == F_PASS)
        ok = 1;  /* an extension's syscall it has no use for yet (Extension.fast_pass) */
    else if (specs[nr].mode == F_EXEC)
        ok = exec_fast(pid, nr, args, info.stack_pointer);  /* _fastexec.c */
    else if (specs[nr].mode != F_LISTING)
        ok = translate(pid, nr, &specs[nr], args, info.stack_pointer);
    else if (fd_listing(args[0]))
        fallback[nr][R_LISTED]++;
    else
        ok = 1;  /* getdents64 of a directory that needs no fix-up */
    if (!ok) {  /* Python reads what we read */
        if (info_buf) memcpy(info_buf, &info, info_size < sizeof info ? info_size : sizeof info);
        info_pid = info_buf ? pid : 0;
        return 0;
    }
    n_fast++;
    ptrace(resume_exit ? PTRACE_SYSCALL : PTRACE_CONT, pid, 0, 0);
    resume_exit = 0;
    return 1;
}

static PyObject *pump(PyObject *self, PyObject *unused) {
    int status = 0;
    pid_t pid;
    info_pid = 0;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        pid = waitpid(-1, &status, __WALL);
        if (pid < 0) { pid = -errno; status = 0; break; }
        if (!enabled) break;
        if (!WIFSTOPPED(status) || (status >> 16) != EVENT_SECCOMP) {
            if (rmdir_exit(pid, status)) { plain_note(pid, 1); continue; }  /* _fastdirs.c */
            int done = tree_stop(pid, status);  /* _fastexec.c */
            if (WIFSTOPPED(status)) plain_note(pid, done);
            if (done) continue;
            break;
        }
        n_seccomp++;
        int done = try_fast(pid);
        plain_note(pid, done);
        if (!done) break;
    }
    Py_END_ALLOW_THREADS
    if (!report_gone() || !report_tree()) return NULL;
    return Py_BuildValue("(ii)", (int)pid, status);
}

static PyObject *took_info(PyObject *self, PyObject *a) {
    int pid;
    if (!PyArg_ParseTuple(a, "i", &pid)) return NULL;
    int had = info_pid == pid && pid > 0;
    info_pid = 0;
    return PyBool_FromLong(had);
}

static PyObject *set_info_buffer(PyObject *self, PyObject *a) {
    unsigned long long addr;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(a, "Kn", &addr, &size)) return NULL;
    info_buf = (unsigned char *)(uintptr_t)addr;
    info_size = (size_t)size;
    info_pid = 0;
    Py_RETURN_NONE;
}

static PyObject *push(PyObject *self, PyObject *a) {
    const char *guest, *host;
    int follow;
    if (!PyArg_ParseTuple(a, "yyp", &guest, &host, &follow)) return NULL;
    if (!table_put(&cache, guest, host, (uint8_t)follow)) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *push_dir(PyObject *self, PyObject *a) {
    const char *host, *guest;
    if (!PyArg_ParseTuple(a, "yy", &host, &guest)) return NULL;
    if (!table_put(&dirs, host, guest, 0)) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static void cwd_forget(int pid) {
    cwd_t *c = cwd_slot(pid);
    if (c->pid != pid) return;
    free(c->guest); free(c->host);
    *c = (cwd_t){0, NULL, NULL};
}

static PyObject *set_cwd(PyObject *self, PyObject *a) {
    int pid;
    const char *guest, *host;
    if (!PyArg_ParseTuple(a, "iyy", &pid, &guest, &host)) return NULL;
    cwd_t *c = cwd_slot(pid);
    if (c->pid == pid && strcmp(c->guest, guest) == 0 && strcmp(c->host, host) == 0) Py_RETURN_NONE;
    cwd_forget(c->pid);  /* (another process's, sharing the slot: it falls back to Python) */
    char *g = strdup(guest), *h = strdup(host);
    if (!g || !h) { free(g); free(h); return PyErr_NoMemory(); }
    *c = (cwd_t){pid, g, h};
    Py_RETURN_NONE;
}

static PyObject *forget_cwd(PyObject *self, PyObject *a) {
    int pid;
    if (!PyArg_ParseTuple(a, "i", &pid)) return NULL;
    cwd_forget(pid);
    Py_RETURN_NONE;
}

static PyObject *clear(PyObject *self, PyObject *unused) { cache_clear(); Py_RETURN_NONE; }

static PyObject *set_on_gone(PyObject *self, PyObject *fn) {
    Py_XSETREF(on_gone, fn == Py_None ? NULL : (Py_INCREF(fn), fn));
    Py_RETURN_NONE;
}

static PyObject *set_syscall(PyObject *self, PyObject *a) {
    unsigned nr, arg, mode, flag_arg, abs_only, dirfd, listed_;
    unsigned long long mask;
    if (!PyArg_ParseTuple(a, "IIIIKIII", &nr, &arg, &mode, &flag_arg, &mask, &abs_only, &dirfd, &listed_))
        return NULL;
    if (nr >= NR_MAX || arg > 5 || flag_arg > 5 || (dirfd > 5 && dirfd != NO_DIRFD) || mode < F_FOLLOW ||
        (mode > F_PASS && mode != F_EXEC))
        return PyErr_Format(PyExc_ValueError, "bad syscall spec for %u", nr);
    specs[nr] = (spec_t){1, (uint8_t)arg, (uint8_t)mode, (uint8_t)flag_arg, (uint8_t)abs_only, (uint8_t)dirfd,
                         (uint8_t)listed_, mask};
    Py_RETURN_NONE;
}

/* Replace a list of C strings by a sequence of bytes. */
static int set_strings(PyObject *seq, char ***list, size_t *count) {
    PyObject *fast = PySequence_Fast(seq, "a sequence of bytes");
    if (!fast) return 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    char **names = calloc((size_t)n + 1, sizeof *names);
    for (Py_ssize_t i = 0; names && i < n; i++) {
        const char *s = PyBytes_AsString(PySequence_Fast_GET_ITEM(fast, i));
        if (!s) { Py_DECREF(fast); for (Py_ssize_t j = 0; j < i; j++) free(names[j]); free(names); return 0; }
        names[i] = strdup(s);
    }
    Py_DECREF(fast);
    if (!names) { PyErr_NoMemory(); return 0; }
    for (size_t i = 0; i < *count; i++) free((*list)[i]);
    free(*list);
    *list = names;
    *count = (size_t)n;
    return 1;
}

static PyObject *set_plain_names(PyObject *self, PyObject *seq) {
    if (!set_strings(seq, &plain_names, &n_plain)) return NULL;
    Py_RETURN_NONE;
}

static PyObject *set_listed(PyObject *self, PyObject *seq) {
    if (!set_strings(seq, &listed, &n_listed)) return NULL;
    Py_RETURN_NONE;
}

static PyObject *set_listing(PyObject *self, PyObject *fds) {
    uint8_t bits[LISTING_FDS / 8] = {0};
    int high = 0;
    PyObject *it = PyObject_GetIter(fds), *item;
    if (!it) return NULL;
    while ((item = PyIter_Next(it))) {
        long fd = PyLong_AsLong(item);
        Py_DECREF(item);
        if (fd == -1 && PyErr_Occurred()) break;
        if (fd >= LISTING_FDS) high = 1;
        else if (fd >= 0) bits[fd / 8] |= (uint8_t)(1u << (fd % 8));
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    memcpy(listing, bits, sizeof listing);
    listing_high = high;
    Py_RETURN_NONE;
}

static PyObject *set_enabled(PyObject *self, PyObject *a) {
    int on;
    if (!PyArg_ParseTuple(a, "p", &on)) return NULL;
    enabled = on;
    if (!on) {
        memset(specs, 0, sizeof specs);
        memset(pending, 0, sizeof pending);
        for (int i = 0; i < CWDS; i++) cwd_forget(cwds[i].pid);
        cache_clear();
        table_clear(&dirs);
        memset(listing, 0, sizeof listing);
        listing_high = 0;
        for (size_t i = 0; i < n_gone; i++) free(gone[i]);
        n_gone = 0;
        gone_overflow = 0;
        Py_CLEAR(on_gone);
        info_buf = NULL;
        info_pid = 0;
        fr_reset();
        exec_reset();
        dirs_reset();
    }
    Py_RETURN_NONE;
}

static PyObject *forget(PyObject *self, PyObject *a) {
    int pid;
    if (!PyArg_ParseTuple(a, "i", &pid)) return NULL;
    pending_t *p = pending_of(pid);
    if (p->pid == pid) p->pid = 0;
    rmdir_forget(pid);
    exec_forget_pid(pid);
    fr_forget_ids(pid);
    Py_RETURN_NONE;
}

static PyObject *fallbacks(PyObject *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    for (int nr = 0; out && nr <= NR_MAX; nr++)
        for (int r = 0; r < N_REASONS; r++)
            if (fallback[nr][r]) {
                PyObject *t = Py_BuildValue("(isK)", nr, reason_names[r], fallback[nr][r]);
                if (!t || PyList_Append(out, t) < 0) { Py_XDECREF(t); Py_DECREF(out); return NULL; }
                Py_DECREF(t);
            }
    return out;
}

static PyObject *stats(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(KKn)", n_seccomp, n_fast, (Py_ssize_t)cache.n_entries);
}

static PyMethodDef methods[] = {
    {"pump", pump, METH_NOARGS, "Wait for the next stop Python must see: (pid, status) or (-errno, 0)."},
    {"took_info", took_info, METH_VARARGS, "took_info(pid): the info buffer holds this seccomp stop's information."},
    {"set_info_buffer", set_info_buffer, METH_VARARGS, "set_info_buffer(addr, size): where to leave it."},
    {"push", push, METH_VARARGS, "push(guest: bytes, host: bytes, follow: bool): mirror one cached translation."},
    {"push_dir", push_dir, METH_VARARGS, "push_dir(host: bytes, guest: bytes): a directory's to_guest."},
    {"set_cwd", set_cwd, METH_VARARGS, "set_cwd(pid, guest: bytes, host: bytes): a process's cached cwd."},
    {"forget_cwd", forget_cwd, METH_VARARGS, "forget_cwd(pid): its cwd is no longer known."},
    {"clear", clear, METH_NOARGS, "Forget every mirrored translation (an invalidation)."},
    {"set_on_gone", set_on_gone, METH_O, "on_gone(list of host paths | None): what pump unlinked."},
    {"set_syscall", set_syscall, METH_VARARGS,
     "set_syscall(nr, arg, mode, flag_arg, mask, abs_only, dirfd, listed): a pure syscall."},
    {"set_plain_names", set_plain_names, METH_O, "Relative names that always go to Python."},
    {"set_listed", set_listed, METH_O, "Host directories whose opens go to Python."},
    {"set_listing", set_listing, METH_O, "set_listing(fds): the fd numbers of the open listed directories."},
    {"set_enabled", set_enabled, METH_VARARGS, "Turn the fast path on or off (off: forgets all)."},
    {"forget", forget, METH_VARARGS, "forget(pid): a tracee exec'd or exited."},
    {"fallbacks", fallbacks, METH_NOARGS, "[(nr, reason, count)]: the stops that went to Python, and why."},
    {"stats", stats, METH_NOARGS, "(seccomp stops seen, stops finished here, cache entries)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "ocirun.engine._fastpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddFunctions(m, fakeroot_methods) < 0) Py_CLEAR(m);
    if (m && PyModule_AddFunctions(m, exec_methods) < 0) Py_CLEAR(m);
    if (m && PyModule_AddFunctions(m, dirs_methods) < 0) Py_CLEAR(m);
    if (m && PyModule_AddFunctions(m, tree_methods) < 0) Py_CLEAR(m);
    if (m && PyModule_AddFunctions(m, script_methods) < 0) Py_CLEAR(m);
    return m;
}
