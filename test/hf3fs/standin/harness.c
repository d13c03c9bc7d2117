// A tiny driver for the USRBIO stand-in (test-only): dlopens the library named on argv[1], reads one
// command per line on stdin and prints one JSON line per command on stdout (flushed at once, so the
// output survives an abort). Node cannot call C directly; standin.test.ts scripts it instead.
//
// Objects are named: iovs (iovcreate/iovwrap), rings (iorcreate), files (open). An fd argument is a
// file name (its original fd), ~name (the value reg_fd returned for it) or a raw number.
//
//   iorsize N | extract PATH SIZE | stats | setenv K V | unsetenv K | sleep MS
//   iovcreate V MP SIZE BS | iovwrap V MP SIZE BS | iovopen V MP SIZE BS | iovunlink V | iovdestroy V
//   iorcreate R VARIANT(1-4) MP ENTRIES r|w IODEPTH PRIORITY TIMEOUT FLAGS | entries R | iordestroy R
//   open F PATH r|w|rw | close F | ishf3fs FD | regfd F | regfdnum N | deregfd F
//   prep R V r|w BUFOFF FD OFF LEN USERDATA | submit R|- | wait R CQEC MIN TIMEOUT_MS(-1: none)
//   sethex V OFF HEX | gethex V OFF LEN | punch FD N S0 E0 S1 E1 ... | hardlink TARGET LINK
//   ls DIR | readlink PATH | exists PATH
//   race_prep R V FD   two threads prep on one ring (the stand-in must abort)
//   race_wait R        two threads wait on one ring (the stand-in must abort)
#define _GNU_SOURCE
#include <stdbool.h>  // before usrbio.h: it uses bool
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "usrbio.h"

typedef int (*iovwrap_fn)(struct hf3fs_iov*, void*, const uint8_t*, const char*, size_t, size_t, int);
typedef int (*iovopen_fn)(struct hf3fs_iov*, const uint8_t*, const char*, size_t, size_t, int);
typedef int (*iorcreate1_fn)(struct hf3fs_ior*, const char*, int, bool, int, int);
typedef int (*iorcreate2_fn)(struct hf3fs_ior*, const char*, int, bool, int, int, int);
typedef int (*iorcreate3_fn)(struct hf3fs_ior*, const char*, int, bool, int, int, int, int);
typedef int (*stats_fn)(char*, int);

static struct {
  hf3fs_is_hf3fs_fn is_hf3fs;
  hf3fs_extract_mount_point_fn extract_mount_point;
  hf3fs_iovcreate_fn iovcreate;
  iovopen_fn iovopen;
  iovwrap_fn iovwrap;
  hf3fs_iovunlink_fn iovunlink;
  hf3fs_iovdestroy_fn iovdestroy;
  hf3fs_ior_size_fn ior_size;
  iorcreate1_fn iorcreate;
  iorcreate2_fn iorcreate2;
  iorcreate3_fn iorcreate3;
  hf3fs_iorcreate4_fn iorcreate4;
  hf3fs_iordestroy_fn iordestroy;
  hf3fs_reg_fd_fn reg_fd;
  hf3fs_dereg_fd_fn dereg_fd;
  hf3fs_io_entries_fn io_entries;
  hf3fs_prep_io_fn prep_io;
  hf3fs_submit_ios_fn submit_ios;
  hf3fs_wait_for_ios_fn wait_for_ios;
  hf3fs_hardlink_fn hardlink;
  hf3fs_punchhole_fn punchhole;
  stats_fn stats;
} L;

#define MAXOBJ 64
struct iovobj { char name[32]; struct hf3fs_iov iov; void* wrapmem; };
struct iorobj { char name[32]; struct hf3fs_ior ior; };
struct fdobj { char name[32]; int fd; int reg; };
static struct iovobj iovs[MAXOBJ];
static struct iorobj iors[MAXOBJ];
static struct fdobj fds[MAXOBJ];

static void die(const char* msg, const char* arg) {
  fprintf(stderr, "harness: %s %s\n", msg, arg ? arg : "");
  exit(2);
}

// Finds the named object, or claims a free slot for it.
#define FIND(table, nm)                                                          \
  ({                                                                             \
    int found_ = -1, free_ = -1;                                                 \
    for (int i_ = 0; i_ < MAXOBJ; i_++) {                                        \
      if (table[i_].name[0] == 0) { if (free_ < 0) free_ = i_; }                 \
      else if (strcmp(table[i_].name, nm) == 0) { found_ = i_; break; }          \
    }                                                                            \
    if (found_ < 0) {                                                            \
      if (free_ < 0 || strlen(nm) >= 32) die("too many objects or long name", nm); \
      strcpy(table[free_].name, nm);                                             \
      found_ = free_;                                                            \
    }                                                                            \
    &table[found_];                                                              \
  })

static int fdarg(const char* s) {
  if (s[0] == '~') return FIND(fds, s + 1)->reg;
  if ((s[0] >= '0' && s[0] <= '9') || s[0] == '-') return atoi(s);
  return FIND(fds, s)->fd;
}

static long long num(const char* s) { return strtoll(s, NULL, 0); }

static void hexout(const uint8_t* p, size_t n) {
  static const char* hx = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) { putchar(hx[p[i] >> 4]); putchar(hx[p[i] & 15]); }
}

static struct timespec deadline_ms(long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  return ts;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct race { struct hf3fs_ior* ior; struct hf3fs_iov* iov; int fd; };

static void* race_prep_thread(void* arg) {
  // The wrong direction: every call fails with -EINVAL, so the ring never fills, but each call
  // still enters prep_io (the thread check comes first).
  struct race* r = arg;
  for (int i = 0; i < 5000000; i++) L.prep_io(r->ior, r->iov, !r->ior->for_read, r->iov->base, r->fd, 0, 1, NULL);
  return NULL;
}

static void* race_wait_thread(void* arg) {
  struct hf3fs_cqe cqe[1];
  struct timespec ts = deadline_ms(2000);
  L.wait_for_ios(arg, cqe, 1, 1, &ts);
  return NULL;
}

#define NEED(n) if (nt < (n)) die("too few arguments for", t[0])

int main(int argc, char** argv) {
  if (argc < 2) die("usage: harness LIB < script", NULL);
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) die("dlopen failed:", dlerror());
#define SYM(field, name) if (!(*(void**)&L.field = dlsym(h, name))) die("missing symbol", name)
  SYM(is_hf3fs, "hf3fs_is_hf3fs"); SYM(extract_mount_point, "hf3fs_extract_mount_point");
  SYM(iovcreate, "hf3fs_iovcreate"); SYM(iovopen, "hf3fs_iovopen"); SYM(iovwrap, "hf3fs_iovwrap");
  SYM(iovunlink, "hf3fs_iovunlink"); SYM(iovdestroy, "hf3fs_iovdestroy"); SYM(ior_size, "hf3fs_ior_size");
  SYM(iorcreate, "hf3fs_iorcreate"); SYM(iorcreate2, "hf3fs_iorcreate2"); SYM(iorcreate3, "hf3fs_iorcreate3");
  SYM(iorcreate4, "hf3fs_iorcreate4"); SYM(iordestroy, "hf3fs_iordestroy"); SYM(reg_fd, "hf3fs_reg_fd");
  SYM(dereg_fd, "hf3fs_dereg_fd"); SYM(io_entries, "hf3fs_io_entries"); SYM(prep_io, "hf3fs_prep_io");
  SYM(submit_ios, "hf3fs_submit_ios"); SYM(wait_for_ios, "hf3fs_wait_for_ios"); SYM(hardlink, "hf3fs_hardlink");
  SYM(punchhole, "hf3fs_punchhole"); SYM(stats, "hf3fs_standin_stats");

  char* line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, stdin) > 0) {
    char* t[2100];
    int nt = 0;
    for (char* s = strtok(line, " \t\r\n"); s && nt < 2100; s = strtok(NULL, " \t\r\n")) t[nt++] = s;
    if (nt == 0 || t[0][0] == '#') continue;
    const char* c = t[0];
    printf("{\"cmd\":\"%s\"", c);

    if (!strcmp(c, "iorsize")) { NEED(2);
      printf(",\"ret\":%zu", L.ior_size((int)num(t[1])));
    } else if (!strcmp(c, "extract")) { NEED(3);
      int size = (int)num(t[2]);
      char buf[4096];
      memset(buf, 0, sizeof buf);
      int r = L.extract_mount_point(buf, size, t[1]);
      printf(",\"ret\":%d,\"mp\":\"%s\"", r, buf);  // test paths need no JSON escaping
    } else if (!strcmp(c, "stats")) {
      char buf[1024];
      int r = L.stats(buf, sizeof buf);
      printf(",\"ret\":%d,\"stats\":%s", r, r > 0 && r <= (int)sizeof buf ? buf : "null");
    } else if (!strcmp(c, "setenv")) { NEED(3); setenv(t[1], t[2], 1);
    } else if (!strcmp(c, "unsetenv")) { NEED(2); unsetenv(t[1]);
    } else if (!strcmp(c, "sleep")) { NEED(2); usleep((useconds_t)num(t[1]) * 1000);
    } else if (!strcmp(c, "iovcreate") || !strcmp(c, "iovwrap") || !strcmp(c, "iovopen")) { NEED(5);
      struct iovobj* v = FIND(iovs, t[1]);
      size_t size = (size_t)num(t[3]), bs = (size_t)num(t[4]);
      int r;
      if (!strcmp(c, "iovcreate")) {
        r = L.iovcreate(&v->iov, t[2], size, bs, -1);
      } else {
        uint8_t id[16];
        for (int i = 0; i < 16; i++) id[i] = (uint8_t)(i * 17 + 1);
        if (!strcmp(c, "iovopen")) {
          r = L.iovopen(&v->iov, id, t[2], size, bs, -1);
        } else {
          v->wrapmem = calloc(1, size ? size : 1);
          r = L.iovwrap(&v->iov, v->wrapmem, id, t[2], size, bs, -1);
        }
      }
      printf(",\"ret\":%d", r);
      if (r == 0) { printf(",\"id\":\""); hexout((const uint8_t*)v->iov.id, 16);
        printf("\",\"size\":%zu,\"blockSize\":%zu,\"mp\":\"%s\"", v->iov.size, v->iov.block_size, v->iov.mount_point); }
    } else if (!strcmp(c, "iovunlink")) { NEED(2); L.iovunlink(&FIND(iovs, t[1])->iov);
    } else if (!strcmp(c, "iovdestroy")) { NEED(2);
      struct iovobj* v = FIND(iovs, t[1]);
      L.iovdestroy(&v->iov);
      // the struct is kept (not zeroed): a second iovdestroy must be caught by the library
    } else if (!strcmp(c, "iorcreate")) { NEED(10);
      struct iorobj* r = FIND(iors, t[1]);
      int variant = (int)num(t[2]), entries = (int)num(t[4]), depth = (int)num(t[6]);
      int prio = (int)num(t[7]), timeout = (int)num(t[8]);
      bool rd = t[5][0] == 'r';
      uint64_t flags = (uint64_t)num(t[9]);
      int ret;
      switch (variant) {
        case 1: ret = L.iorcreate(&r->ior, t[3], entries, rd, depth, -1); break;
        case 2: ret = L.iorcreate2(&r->ior, t[3], entries, rd, depth, prio, -1); break;
        case 3: ret = L.iorcreate3(&r->ior, t[3], entries, rd, depth, prio, timeout, -1); break;
        default: ret = L.iorcreate4(&r->ior, t[3], entries, rd, depth, timeout, -1, flags); break;
      }
      printf(",\"ret\":%d", ret);
      if (ret == 0)
        printf(",\"forRead\":%s,\"ioDepth\":%d,\"priority\":%d,\"timeout\":%d,\"flags\":%llu,\"mp\":\"%s\"",
               r->ior.for_read ? "true" : "false", r->ior.io_depth, r->ior.priority, r->ior.timeout,
               (unsigned long long)r->ior.flags, r->ior.mount_point);
    } else if (!strcmp(c, "entries")) { NEED(2); printf(",\"ret\":%d", L.io_entries(&FIND(iors, t[1])->ior));
    } else if (!strcmp(c, "iordestroy")) { NEED(2); L.iordestroy(&FIND(iors, t[1])->ior);
    } else if (!strcmp(c, "open")) { NEED(4);
      struct fdobj* f = FIND(fds, t[1]);
      int mode = !strcmp(t[3], "r") ? O_RDONLY : !strcmp(t[3], "w") ? O_WRONLY : O_RDWR;
      f->fd = open(t[2], mode | O_CLOEXEC);
      printf(",\"ret\":%d", f->fd < 0 ? -errno : f->fd);
    } else if (!strcmp(c, "close")) { NEED(2);
      struct fdobj* f = FIND(fds, t[1]);
      printf(",\"ret\":%d", close(f->fd));
    } else if (!strcmp(c, "ishf3fs")) { NEED(2); printf(",\"ret\":%d", L.is_hf3fs(fdarg(t[1])) ? 1 : 0);
    } else if (!strcmp(c, "regfd")) { NEED(2);
      struct fdobj* f = FIND(fds, t[1]);
      int r = L.reg_fd(f->fd, 0);
      if (r <= 0) f->reg = r;
      printf(",\"ret\":%d", r);
    } else if (!strcmp(c, "regfdnum")) { NEED(2); printf(",\"ret\":%d", L.reg_fd((int)num(t[1]), 0));
    } else if (!strcmp(c, "deregfd")) { NEED(2); L.dereg_fd(fdarg(t[1]));
    } else if (!strcmp(c, "prep")) { NEED(9);
      struct iorobj* r = FIND(iors, t[1]);
      struct iovobj* v = FIND(iovs, t[2]);
      uint8_t* ptr = (uint8_t*)((uintptr_t)v->iov.base + (uintptr_t)num(t[4]));
      int ret = L.prep_io(&r->ior, &v->iov, t[3][0] == 'r', ptr, fdarg(t[5]), (size_t)num(t[6]),
                          (uint64_t)num(t[7]), (const void*)(uintptr_t)num(t[8]));
      printf(",\"ret\":%d", ret);
    } else if (!strcmp(c, "submit")) { NEED(2);
      printf(",\"ret\":%d", L.submit_ios(!strcmp(t[1], "-") ? NULL : &FIND(iors, t[1])->ior));
    } else if (!strcmp(c, "wait")) { NEED(5);
      struct iorobj* r = FIND(iors, t[1]);
      int cqec = (int)num(t[2]), min = (int)num(t[3]);
      long ms = (long)num(t[4]);
      struct hf3fs_cqe cqes[256];
      memset(cqes, 0xab, sizeof cqes);
      struct timespec ts = deadline_ms(ms < 0 ? 0 : ms);
      double t0 = now_ms();
      int n = L.wait_for_ios(&r->ior, cqes, cqec > 256 ? 256 : cqec, min, ms < 0 ? NULL : &ts);
      printf(",\"ret\":%d,\"ms\":%.1f,\"cqes\":[", n, now_ms() - t0);
      for (int i = 0; i < n; i++)
        printf("%s{\"index\":%d,\"reserved\":%d,\"result\":%lld,\"userdata\":%llu}", i ? "," : "", cqes[i].index,
               cqes[i].reserved, (long long)cqes[i].result, (unsigned long long)(uintptr_t)cqes[i].userdata);
      printf("]");
    } else if (!strcmp(c, "sethex")) { NEED(4);
      struct iovobj* v = FIND(iovs, t[1]);
      size_t off = (size_t)num(t[2]), n = strlen(t[3]) / 2;
      for (size_t i = 0; i < n; i++) { unsigned b; sscanf(t[3] + 2 * i, "%2x", &b); v->iov.base[off + i] = (uint8_t)b; }
    } else if (!strcmp(c, "gethex")) { NEED(4);
      struct iovobj* v = FIND(iovs, t[1]);
      printf(",\"hex\":\""); hexout(v->iov.base + num(t[2]), (size_t)num(t[3])); printf("\"");
    } else if (!strcmp(c, "punch")) { NEED(3);
      int n = (int)num(t[2]);
      static size_t st[1100], en[1100];
      for (int i = 0; i < n && i < 1100; i++) {
        st[i] = 3 + 2 * i < nt ? (size_t)num(t[3 + 2 * i]) : 0;
        en[i] = 4 + 2 * i < nt ? (size_t)num(t[4 + 2 * i]) : 0;
      }
      printf(",\"ret\":%d", L.punchhole(fdarg(t[1]), n, st, en, 0));
    } else if (!strcmp(c, "hardlink")) { NEED(3); printf(",\"ret\":%d", L.hardlink(t[1], t[2]));
    } else if (!strcmp(c, "ls")) { NEED(2);
      DIR* d = opendir(t[1]);
      printf(",\"ret\":%d,\"entries\":[", d ? 0 : -errno);
      int first = 1;
      for (struct dirent* e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) { printf("%s\"%s\"", first ? "" : ",", e->d_name); first = 0; }
      printf("]");
      if (d) closedir(d);
    } else if (!strcmp(c, "readlink")) { NEED(2);
      char buf[4096];
      ssize_t n = readlink(t[1], buf, sizeof buf - 1);
      buf[n > 0 ? n : 0] = 0;
      printf(",\"ret\":%d,\"target\":\"%s\"", n < 0 ? -errno : 0, buf);
    } else if (!strcmp(c, "exists")) { NEED(2); printf(",\"ret\":%d", access(t[1], F_OK) == 0 ? 1 : 0);
    } else if (!strcmp(c, "race_prep")) { NEED(4);
      struct race r = {&FIND(iors, t[1])->ior, &FIND(iovs, t[2])->iov, fdarg(t[3])};
      pthread_t a, b;
      pthread_create(&a, NULL, race_prep_thread, &r);
      pthread_create(&b, NULL, race_prep_thread, &r);
      pthread_join(a, NULL);
      pthread_join(b, NULL);
    } else if (!strcmp(c, "race_wait")) { NEED(2);
      struct hf3fs_ior* ior = &FIND(iors, t[1])->ior;
      pthread_t a;
      pthread_create(&a, NULL, race_wait_thread, ior);
      usleep(100 * 1000);
      race_wait_thread(ior);
      pthread_join(a, NULL);
    } else {
      die("unknown command", c);
    }
    printf("}\n");
    fflush(stdout);
  }
  free(line);
  return 0;
}
