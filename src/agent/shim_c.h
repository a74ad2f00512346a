/* The task shim's C interface (shim.c); C++ callers include agent/shim.h. */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* `argv` is "PROGRAM --state FILE -- cmd args...". Returns the shim's exit status: the command's
 * exit code, 128+N when it died of signal N, 127 when it could not be executed, 125 when
 * the shim itself failed, 2 on a usage error. Runs in a shim process only: it installs
 * signal handlers and waits for a child. */
int gpuorch_shim_main(int argc, char** argv);

/* The start time (clock ticks since boot, field 22 of /proc/PID/stat) of a live process;
 * 0 when it does not exist or is a zombie. A (pid, start time) pair names one process even
 * after the pid is reused. */
unsigned long long gpuorch_process_start_time(int pid);

#ifdef __cplusplus
}
#endif
