// hf3fs-test-daemon [--chunk BYTES] [--control DIR] [--scan-ms MS] [--workers N] BACKING MOUNT
//
// Mounts BACKING at MOUNT as file system type fuse.hf3fs and prints "ready" on stdout once the
// mount is up. It runs as two processes: a supervisor, which holds stdin, and the FUSE server, its
// child. The server stops (and unmounts) on SIGTERM or SIGINT to either; when stdin reaches its
// end (the test runner went away, however it died); or when the supervisor dies. Whichever way
// the server ends, even killed, the supervisor unmounts MOUNT (lazily) and removes the server's
// semaphores from /dev/shm before it exits with the server's status.
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "daemon.h"

namespace hf3fs_test {
namespace {

Options g_options;

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr, "hf3fs-test-daemon: %s\nusage: hf3fs-test-daemon [--chunk BYTES] [--control DIR] "
               "[--scan-ms MS] [--workers N] BACKING MOUNT\n", why);
  std::exit(2);
}

long Number(const char* s, long min) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < min) Usage("bad number");
  return v;
}

void ParseArgs(int argc, char** argv) {
  int i = 1;
  for (; i + 1 < argc && std::strncmp(argv[i], "--", 2) == 0; i += 2) {
    const std::string opt = argv[i];
    if (opt == "--chunk") g_options.chunk = static_cast<uint64_t>(Number(argv[i + 1], 4096));
    else if (opt == "--control") g_options.control = argv[i + 1];
    else if (opt == "--scan-ms") g_options.scan_ms = static_cast<int>(Number(argv[i + 1], 1));
    else if (opt == "--workers") g_options.workers = static_cast<int>(Number(argv[i + 1], 1));
    else Usage(("unknown option " + opt).c_str());
  }
  if (argc - i != 2) Usage("BACKING and MOUNT are required");
  if ((g_options.chunk & (g_options.chunk - 1)) != 0) Usage("--chunk must be a power of two");
  char* backing = realpath(argv[i], nullptr);
  char* mount = realpath(argv[i + 1], nullptr);
  if (backing == nullptr || mount == nullptr) Usage("BACKING and MOUNT must exist");
  g_options.backing = backing;
  g_options.mount = mount;
  std::free(backing);
  std::free(mount);
}

// The FUSE server, in the child.
int Serve() {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  PassthroughInit(g_options.backing);
  VirtInit();
  RingsInit();
  const char* argv[] = {"hf3fs-test-daemon", "-o", "fsname=hf3fs-test,subtype=hf3fs"};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  fuse_session* se = fuse_session_new(&args, &kPassthroughOps, sizeof(kPassthroughOps), nullptr);
  if (se == nullptr || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, g_options.mount.c_str()) != 0) {
    std::fprintf(stderr, "hf3fs-test-daemon: cannot mount %s\n", g_options.mount.c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, 16);
  int r = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  VirtShutdown();
  RingsShutdown();
  return r == 0 ? 0 : 1;
}

// The supervisor: waits for the end of stdin, a signal or the server's exit; then unmounts.
int Supervise(pid_t child) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, child, 0));
  bool asked = false;
  for (;;) {
    pollfd fds[3] = {{pidfd, POLLIN, 0}, {sfd, POLLIN, 0}, {asked ? -1 : 0, POLLIN, 0}};
    int n = poll(fds, 3, asked ? 5000 : -1);
    if (n < 0 && errno == EINTR) continue;
    if (fds[0].revents) break;  // the server exited
    if (n == 0) {
      kill(child, SIGKILL);  // asked 5 s ago and still there
      continue;
    }
    char buf[256];
    if (fds[1].revents) {
      signalfd_siginfo si;
      if (read(sfd, &si, sizeof(si)) > 0) asked = true;
    }
    if (fds[2].revents && read(0, buf, sizeof(buf)) <= 0) asked = true;  // the end of stdin
    if (asked) kill(child, SIGTERM);
  }
  int status = 0;
  waitpid(child, &status, 0);
  umount2(g_options.mount.c_str(), MNT_DETACH);  // a no-op (EINVAL) when the server unmounted
  RingsUnlink();  // a killed server left its semaphores in /dev/shm
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

const Options& options() { return g_options; }

}  // namespace hf3fs_test

int main(int argc, char** argv) {
  hf3fs_test::ParseArgs(argc, argv);
  hf3fs_test::RingsName();
  std::fflush(stdout);
  pid_t child = fork();
  if (child < 0) {
    std::perror("fork");
    return 2;
  }
  if (child == 0) {
    if (FILE* null = std::freopen("/dev/null", "r", stdin); null == nullptr) return 2;
    return hf3fs_test::Serve();
  }
  return hf3fs_test::Supervise(child);
}
