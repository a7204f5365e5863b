/* The fake root's stat family (-0, -i) in the compiled fast path (x86_64).
 *
 * Under -0 every stat, lstat, fstat, newfstatat and statx is answered in the tracer
 * (ocirun/engine/extensions/fake_id0/stats.py: StatCalls._emulate_stat): the host file
 * is stat'ed, the result shows the fake owner for the real user's files and what the
 * fake-root database records for the inode (owner, mode, device number), and the
 * syscall is skipped with the stat's result. This file does the same without the
 * interpreter, from a mirror of the database's records that the extension keeps exact
 * (fake_id0/fast.py): every change of its cache is pushed here before the tracer
 * handles the next stop, and the look for other engines' commits, which the database
 * makes at most every 50 ms, is left to Python: once the time Python gave (fr_until)
 * has passed, the next stat goes to Python, which looks and gives a new time.
 * Whatever is not the plain case goes to Python: a path only Python can translate, a
 * /proc path, an error on an fd, a buffer the guest cannot have written.
 *
 * The fake root's opens and access calls are the core's plain ones (the fast path
 * translates them) unless the fake root has work: an open that may create a file
 * (whose owner it records), or a check the real user would fail where root passes
 * (FileCalls._root_permissions, _access). fr_guard tells them apart with one access(2).
 *
 * getuid, geteuid, getgid and getegid are answered from the ids Python pushes for a
 * thread when it answers one itself, changes them (set*id, exec) or a thread is
 * forked; the fast path's forget(pid) (exit, exec) drops them.
 */
#include "_fastpath.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RECORD_BUCKETS 65536
enum { K_STAT = 1, K_LSTAT, K_FSTAT, K_FSTATAT, K_STATX, K_MAX };
enum { G_OPEN = 1, G_ACCESS, G_MAX };  /* fr_guard: what the fake root checks */
enum { I_RUID = K_MAX, I_EUID, I_RGID, I_EGID, I_MAX };  /* kinds of the id getters */
#define IDS 4096
enum { HAS_BTIME = 1, HAS_UID = 2, HAS_GID = 4, HAS_MODE = 8, HAS_RDEV = 16 };

/* A record of the fake-root database, as FakeRootDB.get returns it */
typedef struct record {
    struct record *next;
    uint64_t dev, ino, btime, uid, gid, mode, rdev;
    unsigned has;
} record_t;

static uint8_t kinds[NR_MAX];
static uint8_t guards[NR_MAX], guard_arg[NR_MAX];  /* guard_arg: G_ACCESS's mode argument */
static record_t *records[RECORD_BUCKETS];
static size_t n_records;
static int configured;
static uint32_t real_uid, real_gid, fake_uid, fake_gid;
static struct timespec fresh_until;
typedef struct { int pid; uint32_t id[4]; } ids_t;  /* a thread's ruid, euid, rgid, egid */
static ids_t ids[IDS];  /* CLOCK_MONOTONIC (Python's time.monotonic) */

static size_t bucket(uint64_t dev, uint64_t ino) {
    return (size_t)((ino * 0x9E3779B97F4A7C15ULL) ^ dev) % RECORD_BUCKETS;
}

static record_t *record_get(uint64_t dev, uint64_t ino) {
    for (record_t *r = records[bucket(dev, ino)]; r; r = r->next)
        if (r->dev == dev && r->ino == ino) return r;
    return NULL;
}

static void record_forget(uint64_t dev, uint64_t ino) {
    for (record_t **p = &records[bucket(dev, ino)]; *p; p = &(*p)->next)
        if ((*p)->dev == dev && (*p)->ino == ino) {
            record_t *r = *p;
            *p = r->next;
            free(r);
            n_records--;
            return;
        }
}

static void records_clear(void) {
    for (size_t i = 0; n_records && i < RECORD_BUCKETS; i++)
        while (records[i]) {
            record_t *r = records[i];
            records[i] = r->next;
            free(r);
            n_records--;
        }
    n_records = 0;
}

void fr_reset(void) {
    memset(kinds, 0, sizeof kinds);
    memset(guards, 0, sizeof guards);
    memset(ids, 0, sizeof ids);
    records_clear();
    configured = 0;
    fresh_until = (struct timespec){0, 0};
}

int fr_handles(uint64_t nr) { return nr < NR_MAX && kinds[nr] != 0; }

static int fresh(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec < fresh_until.tv_sec || (now.tv_sec == fresh_until.tv_sec && now.tv_nsec < fresh_until.tv_nsec);
}

int fr_guarded(uint64_t nr) { return nr < NR_MAX && guards[nr] != 0; }

/* 1: the fake root has nothing to do for this open or access call (its host path
 * `host`, NULL where the fast path leaves a plain name to the kernel); 0: Python. */
int fr_guard(uint64_t nr, const spec_t *s, const uint64_t *args, const char *host) {
    int need;
    if (guards[nr] == G_OPEN) {
        uint64_t f = args[s->flag_arg];
        if (f & O_CREAT) return fp_fall(nr, R_FAKE_GUARD);  /* a new file's owner (_note_creation) */
        if (real_uid == 0 || (f & O_PATH)) return 1;
        int acc = (int)(f & O_ACCMODE);
        need = acc == O_WRONLY ? W_OK : acc == O_RDWR ? R_OK | W_OK : R_OK;
        if (f & O_TRUNC) need |= W_OK;
    } else {
        need = (int)(args[guard_arg[nr]] & 7);
        if (real_uid == 0 || need == 0) return 1;
    }
    if (!host || access(host, need) != 0) return fp_fall(nr, R_FAKE_GUARD);  /* root's rights: Python */
    return 1;
}

/* What StatCalls._stat_source finds: the host path to stat, the flags, the buffer. */
typedef struct { char host[PATH_MAX_]; int flags; unsigned mask; uint64_t buf; } source_t;

static int fd_source(pid_t pid, uint64_t nr, int fd, source_t *src) {
    if (fd == AT_FDCWD_) snprintf(src->host, sizeof src->host, "/proc/%d/cwd", (int)pid);
    else if (fd >= 0) snprintf(src->host, sizeof src->host, "/proc/%d/fd/%d", (int)pid, fd);
    else return fp_fall(nr, R_FAKE_STAT);  /* the kernel's EBADF */
    return 1;
}

static int source_of(pid_t pid, uint64_t nr, int kind, const uint64_t *args, uint64_t sp, source_t *src) {
    static const spec_t at = {1, 1, F_FLAG_NOFOLLOW, 0, 0, 0, 0, AT_SYMLINK_NOFOLLOW};
    spec_t s = at;
    char path[PATH_MAX_], base_host[PATH_MAX_];
    const char *base;
    src->mask = 0;
    switch (kind) {
    case K_FSTAT:  /* (AT_FDCWD is no fd here: the kernel's EBADF) */
        src->flags = 0;
        src->buf = args[1];
        if ((int32_t)args[0] < 0) return fp_fall(nr, R_FAKE_STAT);
        return fd_source(pid, nr, (int)(int32_t)args[0], src);
    case K_STAT: case K_LSTAT:
        s = (spec_t){1, 0, kind == K_STAT ? F_FOLLOW : F_NOFOLLOW, 0, 0, NO_DIRFD, 0, 0};
        src->flags = kind == K_STAT ? 0 : AT_SYMLINK_NOFOLLOW;
        src->buf = args[1];
        break;
    case K_FSTATAT:
        s.flag_arg = 3;
        src->flags = (int)args[3];
        src->buf = args[2];
        break;
    default:  /* statx */
        s.flag_arg = 2;
        src->flags = (int)args[2];
        src->mask = (unsigned)args[3];
        src->buf = args[4];
    }
    if (!fp_guest_path(pid, nr, args[s.arg], sp, path)) return 0;
    if (!path[0]) {  /* AT_EMPTY_PATH: the dirfd's file */
        if (kind == K_STAT || kind == K_LSTAT || !(src->flags & AT_EMPTY_PATH)) return fp_fall(nr, R_EMPTY);
        src->flags &= ~AT_EMPTY_PATH;
        return fd_source(pid, nr, (int)(int32_t)args[0], src);
    }
    if (!fp_host_path(pid, nr, &s, args, path, fp_follow(&s, args), &base, base_host, src->host)) return 0;
    if (src->host[0] != '/' || strncmp(src->host, "/proc/", 6) == 0) return fp_fall(nr, R_PROC);
    return 1;
}

/* StatCalls._patched: the fake owner of the real user's files, then the record's fields
 * (unless the birth times tell another file that got the recorded inode number). */
typedef struct { uint32_t uid, gid; uint64_t mode, rdev; int mode_set, rdev_set; } view_t;

static void guest_view(uint64_t dev, uint64_t ino, uint64_t btime, view_t *v) {
    if (v->uid == real_uid) v->uid = fake_uid;
    if (v->gid == real_gid) v->gid = fake_gid;
    const record_t *r = record_get(dev, ino);
    if (!r || ((r->has & HAS_BTIME) && r->btime && btime && r->btime != btime)) return;
    if (r->has & HAS_UID) v->uid = (uint32_t)r->uid;
    if (r->has & HAS_GID) v->gid = (uint32_t)r->gid;
    if (r->has & HAS_MODE) { v->mode = r->mode; v->mode_set = 1; }
    if (r->has & HAS_RDEV) { v->rdev = r->rdev; v->rdev_set = 1; }
}

static uint32_t dev_major(uint64_t d) { return (uint32_t)(((d >> 32) & 0xFFFFF000) | ((d >> 8) & 0xFFF)); }
static uint32_t dev_minor(uint64_t d) { return (uint32_t)(((d >> 12) & 0xFFFFFF00) | (d & 0xFF)); }

/* Stat the source as the guest's call would and patch the result; its size, or -errno. */
static long answer(int kind, const source_t *src, unsigned char *out) {
    view_t v = {0};
    if (kind == K_STATX) {
        struct statx x;
        if (statx(AT_FDCWD, src->host, src->flags, src->mask, &x) != 0) return -errno;
        uint64_t btime = (x.stx_mask & STATX_BTIME)
            ? (uint64_t)((int64_t)x.stx_btime.tv_sec * 1000000000LL + x.stx_btime.tv_nsec) : 0;
        v.uid = x.stx_uid;
        v.gid = x.stx_gid;
        guest_view(makedev(x.stx_dev_major, x.stx_dev_minor), x.stx_ino, btime, &v);
        x.stx_uid = v.uid;
        x.stx_gid = v.gid;
        if (v.mode_set) x.stx_mode = (uint16_t)v.mode;
        if (v.rdev_set) {
            x.stx_rdev_major = dev_major(v.rdev);
            x.stx_rdev_minor = dev_minor(v.rdev);
            x.stx_size = 0;
        }
        memcpy(out, &x, sizeof x);
        return sizeof x;
    }
    struct stat st;
    if (syscall(SYS_newfstatat, AT_FDCWD, src->host, &st, src->flags) != 0) return -errno;
    v.uid = st.st_uid;
    v.gid = st.st_gid;
    guest_view(st.st_dev, st.st_ino, 0, &v);
    st.st_uid = v.uid;
    st.st_gid = v.gid;
    if (v.mode_set) st.st_mode = (mode_t)v.mode;
    if (v.rdev_set) {
        st.st_rdev = v.rdev;
        st.st_size = 0;
    }
    memcpy(out, &st, sizeof st);
    return sizeof st;
}

void fr_forget_ids(pid_t pid) {
    ids_t *e = &ids[(unsigned)pid % IDS];
    if (e->pid == pid) e->pid = 0;
}

static int fr_ids(pid_t pid, uint64_t nr, int kind) {
    const ids_t *e = &ids[(unsigned)pid % IDS];
    if (e->pid != pid) return fp_fall(nr, R_FAKE_IDS);
    return fp_skip(pid, e->id[kind - I_RUID]) || fp_fall(nr, R_WRITE);
}

/* 1: the stat or id getter is answered and the syscall skipped; 0: Python handles the stop. */
int fr_stop(pid_t pid, uint64_t nr, const uint64_t *args, uint64_t sp) {
    int kind = kinds[nr];
    if (kind >= I_RUID) return fr_ids(pid, nr, kind);
    if (!fresh()) return fp_fall(nr, R_POLL);  /* Python looks for other engines' commits */
    source_t src;
    if (!source_of(pid, nr, kind, args, sp, &src)) return 0;
    unsigned char out[sizeof(struct statx) > sizeof(struct stat) ? sizeof(struct statx) : sizeof(struct stat)];
    long n = answer(kind, &src, out);
    if (n < 0) {
        if (kind == K_FSTAT || strncmp(src.host, "/proc/", 6) == 0) return fp_fall(nr, R_FAKE_STAT);
        return fp_skip(pid, n) || fp_fall(nr, R_WRITE);
    }
    struct iovec l = {out, (size_t)n}, r = {(void *)(uintptr_t)src.buf, (size_t)n};
    if (!src.buf || process_vm_writev(pid, &l, 1, &r, 1, 0) != n) return fp_fall(nr, R_WRITE);
    return fp_skip(pid, 0) || fp_fall(nr, R_WRITE);
}

/* ---- what Python pushes (ocirun/engine/extensions/fake_id0/fast.py) ---------------- */

static PyObject *fr_config(PyObject *self, PyObject *a) {
    if (!PyArg_ParseTuple(a, "IIII", &real_uid, &real_gid, &fake_uid, &fake_gid)) return NULL;
    configured = 1;
    Py_RETURN_NONE;
}

static PyObject *fr_syscall(PyObject *self, PyObject *a) {
    unsigned nr, kind;
    if (!PyArg_ParseTuple(a, "II", &nr, &kind)) return NULL;
    if (nr >= NR_MAX || kind >= I_MAX) return PyErr_Format(PyExc_ValueError, "bad syscall kind for %u", nr);
    if (!configured) return PyErr_Format(PyExc_RuntimeError, "fr_config first");
    kinds[nr] = (uint8_t)kind;
    Py_RETURN_NONE;
}

static PyObject *fr_set_ids(PyObject *self, PyObject *a) {
    int pid;
    unsigned r, e, rg, eg;
    if (!PyArg_ParseTuple(a, "iIIII", &pid, &r, &e, &rg, &eg)) return NULL;
    ids[(unsigned)pid % IDS] = (ids_t){pid, {r, e, rg, eg}};
    Py_RETURN_NONE;
}

static PyObject *fr_guard_syscall(PyObject *self, PyObject *a) {
    unsigned nr, guard, arg;
    if (!PyArg_ParseTuple(a, "III", &nr, &guard, &arg)) return NULL;
    if (nr >= NR_MAX || guard >= G_MAX || arg > 5) return PyErr_Format(PyExc_ValueError, "bad guard for %u", nr);
    if (!configured) return PyErr_Format(PyExc_RuntimeError, "fr_config first");
    guards[nr] = (uint8_t)guard;
    guard_arg[nr] = (uint8_t)arg;
    Py_RETURN_NONE;
}

/* A record field: absent (None) or the integer as the result's field takes it (wrapped). */
static int field(PyObject *o, uint64_t *out, unsigned bit, unsigned *has) {
    if (o == Py_None) return 1;
    unsigned long long v = PyLong_AsUnsignedLongLongMask(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return 0;
    *out = v;
    *has |= bit;
    return 1;
}

static PyObject *fr_put(PyObject *self, PyObject *a) {
    unsigned long long dev, ino;
    PyObject *bt, *uid, *gid, *mode, *rdev;
    if (!PyArg_ParseTuple(a, "KKOOOOO", &dev, &ino, &bt, &uid, &gid, &mode, &rdev)) return NULL;
    record_t r = {NULL, dev, ino, 0, 0, 0, 0, 0, 0};
    if (!field(bt, &r.btime, HAS_BTIME, &r.has) || !field(uid, &r.uid, HAS_UID, &r.has) ||
        !field(gid, &r.gid, HAS_GID, &r.has) || !field(mode, &r.mode, HAS_MODE, &r.has) ||
        !field(rdev, &r.rdev, HAS_RDEV, &r.has))
        return NULL;
    record_t *e = record_get(dev, ino);
    if (!e) {
        if (!(e = malloc(sizeof *e))) return PyErr_NoMemory();
        size_t b = bucket(dev, ino);
        r.next = records[b];
        records[b] = e;
        n_records++;
    } else {
        r.next = e->next;
    }
    *e = r;
    Py_RETURN_NONE;
}

static PyObject *fr_forget(PyObject *self, PyObject *a) {
    unsigned long long dev, ino;
    if (!PyArg_ParseTuple(a, "KK", &dev, &ino)) return NULL;
    record_forget(dev, ino);
    Py_RETURN_NONE;
}

static PyObject *fr_clear(PyObject *self, PyObject *unused) {
    records_clear();
    Py_RETURN_NONE;
}

static PyObject *fr_until(PyObject *self, PyObject *a) {
    double t;
    if (!PyArg_ParseTuple(a, "d", &t)) return NULL;
    fresh_until.tv_sec = (time_t)t;
    fresh_until.tv_nsec = (long)((t - (double)fresh_until.tv_sec) * 1e9);
    Py_RETURN_NONE;
}

PyMethodDef fakeroot_methods[] = {
    {"fr_config", fr_config, METH_VARARGS, "fr_config(real_uid, real_gid, fake_uid, fake_gid): -0's ids."},
    {"fr_syscall", fr_syscall, METH_VARARGS,
     "fr_syscall(nr, kind): answer this stat syscall (1 stat ... 5 statx) or id getter (6 getuid ... 9 getegid)."},
    {"fr_set_ids", fr_set_ids, METH_VARARGS, "fr_set_ids(pid, ruid, euid, rgid, egid): a thread's ids."},
    {"fr_guard", fr_guard_syscall, METH_VARARGS,
     "fr_guard(nr, guard, mode_arg): the core's open (1) or access (2) call, unless the fake root has work."},
    {"fr_put", fr_put, METH_VARARGS, "fr_put(dev, ino, btime, uid, gid, mode, rdev): a record (None: absent)."},
    {"fr_forget", fr_forget, METH_VARARGS, "fr_forget(dev, ino): the inode has no record."},
    {"fr_clear", fr_clear, METH_NOARGS, "Forget every record (the database's cache was reloaded)."},
    {"fr_until", fr_until, METH_VARARGS, "fr_until(monotonic time): until when the records are fresh."},
    {NULL, NULL, 0, NULL},
};
