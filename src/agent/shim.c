/* The task shim: the process between the agent and a task's command (see shim.h).
 *
 * Plain C on purpose. The agent starts one shim per task, so its exec cost is paid by every
 * job: built statically against musl (Debian's musl-tools) the executable is ~30 KB and
 * execs in ~0.15 ms, where a static glibc or dynamic C++ build touches many more pages at
 * start (0.6-1.6 ms on the 2-core development VM; bench/README.md has the measurements).
 * The same file is also compiled into the agent library for `gpuorch task-shim`.
 *
 * Only the task's `state` file is written, by appending one short line per record with a
 * single write(2) on an O_APPEND descriptor, so records of the shim and the agent never
 * interleave. No fsync: a record lost in a power cut describes a process that is gone too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/shim_c.h"

static const int kForwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
enum { kForwardedCount = sizeof(kForwarded) / sizeof(kForwarded[0]) };

static volatile sig_atomic_t g_child = 0;

/* Async-signal-safe only. The signals are blocked until g_child is set, so a signal that
 * arrives while the command starts is delivered after, not lost. */
static void Forward(int sig) {
  if (g_child > 0) kill(-(pid_t)g_child, sig);
}

/* One line on stderr (the task's .stderr.log), prefixed with who says it. */
__attribute__((format(printf, 1, 2))) static void Say(const char* format, ...) {
  char line[1024];
  int n = snprintf(line, sizeof(line), "gpuorch task-shim: ");
  va_list args;
  va_start(args, format);
  n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, format, args);
  va_end(args);
  if (n > (int)sizeof(line) - 2) n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  ssize_t w = write(2, line, (size_t)n);
  (void)w;
}

unsigned long long gpuorch_process_start_time(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  /* The command name (field 2) may hold spaces and parentheses: fields restart after the
   * last ')'. Then: state (3), ..., starttime (22). */
  char* p = strrchr(buf, ')');
  if (p == NULL || p[1] == '\0' || p[2] == '\0') return 0;
  p += 2;
  if (*p == 'Z' || *p == 'X' || *p == 'x') return 0;
  for (int field = 3; field < 22; ++field) {
    p = strchr(p, ' ');
    if (p == NULL) return 0;
    ++p;
  }
  unsigned long long v = 0;
  while (*p >= '0' && *p <= '9') v = v * 10 + (unsigned long long)(*p++ - '0');
  return v;
}

/* One record, one write. */
static int Append(int fd, const char* line, int n) {
  while (1) {
    ssize_t w = write(fd, line, (size_t)n);
    if (w == n) return 0;
    if (w < 0 && errno == EINTR) continue;
    return -1;
  }
}

static long long Ms(struct timeval tv) { return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000; }

/* Who the command runs as: "UID:GID" or "UID:GID:G1,G2,..." (supplementary groups). The
 * agent resolves names (NSS) so that this static program never has to. */
enum { kMaxGroups = 1024 };
struct Identity {
  int set;
  uid_t uid;
  gid_t gid;
  gid_t groups[kMaxGroups];
  size_t ngroups;
};

static int ParseId(const char** p, unsigned long* out) {
  char* end = NULL;
  if (**p < '0' || **p > '9') return -1;
  errno = 0;
  *out = strtoul(*p, &end, 10);
  if (errno != 0 || *out > 0x7fffffffUL) return -1;
  *p = end;
  return 0;
}

static int ParseIdentity(const char* s, struct Identity* id) {
  unsigned long v = 0;
  memset(id, 0, sizeof(*id));
  if (ParseId(&s, &v) != 0 || *s++ != ':') return -1;
  id->uid = (uid_t)v;
  if (ParseId(&s, &v) != 0) return -1;
  id->gid = (gid_t)v;
  if (*s == ':') {
    ++s;
    while (*s != '\0') {
      if (id->ngroups == kMaxGroups || ParseId(&s, &v) != 0) return -1;
      id->groups[id->ngroups++] = (gid_t)v;
      if (*s == ',') ++s;
      else if (*s != '\0') return -1;
    }
  }
  if (*s != '\0') return -1;
  id->set = 1;
  return 0;
}

/* In the command's process, before exec: joins the task's cgroup and takes the task's
 * identity (groups first: once the uid is dropped nothing else can be changed). Returns a
 * static message on failure. */
static const char* Enter(const char* cgroup, const struct Identity* id) {
  if (cgroup != NULL) {
    char procs[4096];
    if (snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup) >= (int)sizeof(procs)) {
      return "cgroup path too long";
    }
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) {
      if (fd >= 0) close(fd);
      return "cannot join the task's cgroup";
    }
    close(fd);
  }
  if (id->set) {
    if (setgroups(id->ngroups, id->groups) != 0) return "setgroups failed";
    if (setgid(id->gid) != 0) return "setgid failed";
    if (setuid(id->uid) != 0) return "setuid failed";
    /* A dropped root must not be able to come back. */
    if (id->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) return "root could be regained";
  }
  return NULL;
}

int gpuorch_shim_main(int argc, char** argv) {
  const char* path = NULL;
  const char* cgroup = NULL;
  const char* workdir = NULL;
  static struct Identity id;
  int first = -1;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--") == 0) {
      first = i + 1;
      break;
    }
    if (i + 1 >= argc) break;
    if (strcmp(argv[i], "--state") == 0) {
      path = argv[++i];
    } else if (strcmp(argv[i], "--cgroup") == 0) {
      cgroup = argv[++i];
    } else if (strcmp(argv[i], "--chdir") == 0) {
      workdir = argv[++i];
    } else if (strcmp(argv[i], "--user") == 0) {
      if (ParseIdentity(argv[++i], &id) != 0) {
        Say("--user: expected UID:GID[:G1,G2,...], got '%s'", argv[i]);
        return 2;
      }
    } else {
      break;
    }
  }
  if (path == NULL || first < 0 || first >= argc) {
    Say("usage: task-shim --state FILE [--cgroup DIR] [--user UID:GID[:GROUPS]] "
        "[--chdir DIR] -- COMMAND [ARGS...]");
    return 2;
  }
  /* The agent created the state file with the task's spec before starting us. */
  int state = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (state < 0) {
    Say("cannot open %s: %s", path, strerror(errno));
    return 125;
  }
  char line[128];
  int n = snprintf(line, sizeof(line), "shim %d %llu\n", (int)getpid(),
                   gpuorch_process_start_time((int)getpid()));
  if (Append(state, line, n) != 0) {
    Say("cannot write %s: %s", path, strerror(errno));
    return 125;
  }
  sigset_t forwarded, old;
  sigemptyset(&forwarded);
  for (int i = 0; i < kForwardedCount; ++i) sigaddset(&forwarded, kForwarded[i]);
  sigprocmask(SIG_BLOCK, &forwarded, &old);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = Forward;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < kForwardedCount; ++i) sigaction(kForwarded[i], &sa, NULL);

  /* The command waits on this pipe until its `child` record is written, so anyone who has
   * seen the command do anything can also find its pid. */
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) != 0) {
    Say("pipe: %s", strerror(errno));
    return 125;
  }
  pid_t child = fork();
  if (child < 0) {
    Say("fork: %s", strerror(errno));
    return 125;
  }
  if (child == 0) {
    close(gate[1]);
    char byte;
    while (read(gate[0], &byte, 1) < 0 && errno == EINTR) {
    }
    /* Its own process group, so that a stop reaches everything it spawned (torchrun's
     * workers, a shell's children) and not the shim. */
    setpgid(0, 0);
    const char* why = Enter(cgroup, &id);
    if (why != NULL) {
      Say("cannot start the command: %s: %s", why, strerror(errno));
      _exit(125);
    }
    if (workdir != NULL && chdir(workdir) != 0) {
      Say("cannot enter workdir '%s': %s", workdir, strerror(errno));
      _exit(127);
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int i = 0; i < kForwardedCount; ++i) sigaction(kForwarded[i], &dfl, NULL);
    /* gpuorch ignores SIGPIPE (TLS writes raise it); an ignored signal survives exec, and
       tasks expect the default (`producer | head` ends the producer). */
    sigaction(SIGPIPE, &dfl, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(argv[first], argv + first);
    Say("cannot run '%s': %s", argv[first], strerror(errno));
    _exit(127);
  }
  setpgid(child, child); /* Also here: whichever runs first, the group exists before a kill. */
  close(gate[0]);
  n = snprintf(line, sizeof(line), "child %d %llu\n", (int)child,
               gpuorch_process_start_time((int)child));
  (void)Append(state, line, n);
  close(gate[1]);
  g_child = child;
  sigprocmask(SIG_SETMASK, &old, NULL);

  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof(ru));
  while (wait4(child, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      Say("wait4: %s", strerror(errno));
      return 125;
    }
  }
  const int code = WIFEXITED(status)     ? WEXITSTATUS(status)
                   : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                         : 125;
  /* Resource use of the command and of every descendant it waited for. */
  n = snprintf(line, sizeof(line), "exit %d %lld %lld %ld\n", code, Ms(ru.ru_utime),
               Ms(ru.ru_stime), (long)ru.ru_maxrss);
  if (Append(state, line, n) != 0) Say("cannot record the exit code in %s", path);
  return code;
}
