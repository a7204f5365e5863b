/* What the parts of the compiled fast path share: _fastpath.c (the loop, the path
 * translation) and _fakeroot.c (-0's stat family answered from mirrored records). */
#ifndef OCIRUN_FASTPATH_H
#define OCIRUN_FASTPATH_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <sys/types.h>

#define NR_MAX 512
#define PATH_MAX_ 4096
#define NO_DIRFD 0xFF
#define AT_FDCWD_ (-100)

enum { F_FOLLOW = 1, F_NOFOLLOW, F_FLAG_NOFOLLOW, F_FLAG_FOLLOW, F_OPEN, F_LISTING, F_UNLINK, F_PASS };
/* why stops went to Python, per syscall (OCIRUN_FASTPATH_STATS=2 prints them) */
enum { R_INFO, R_NOT_PURE, R_POINTER, R_READ, R_EMPTY, R_BASE, R_PROC, R_MISS, R_LISTED, R_SLOT, R_WRITE,
       R_UNLINK, R_POLL, R_FAKE_STAT, R_EXEC, R_FAKE_GUARD, R_FAKE_IDS, N_REASONS };

typedef struct { uint8_t on, arg, mode, flag_arg, abs_only, dirfd, listed; uint64_t mask; } spec_t;

/* _fastpath.c */
int fp_fall(uint64_t nr, int reason);  /* counts a stop that goes to Python; returns 0 */
int fp_guest_path(pid_t pid, uint64_t nr, uint64_t ptr, uint64_t sp, char *path);
int fp_host_path(pid_t pid, uint64_t nr, const spec_t *s, const uint64_t *args, const char *path, int follow,
                 const char **base, char *base_host, char *host);
int fp_follow(const spec_t *s, const uint64_t *args);
int fp_skip(pid_t pid, long result);

/* _fakeroot.c */
extern PyMethodDef fakeroot_methods[];
int fr_handles(uint64_t nr);
int fr_stop(pid_t pid, uint64_t nr, const uint64_t *args, uint64_t sp);
void fr_forget_ids(pid_t pid);
void fr_reset(void);
int fr_guarded(uint64_t nr);
int fr_guard(uint64_t nr, const spec_t *s, const uint64_t *args, const char *host);
#endif
