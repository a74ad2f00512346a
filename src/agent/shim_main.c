/* `gpuorch-shim`: the task shim as a small static executable of its own (shim.c). The
 * agent starts one per task; `gpuorch task-shim` runs the same code inside the full binary
 * and stays as the fallback when this file is missing. */
#include "agent/shim_c.h"

int main(int argc, char** argv) { return gpuorch_shim_main(argc, argv); }
