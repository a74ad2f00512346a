# The dependency rule (docs/architecture.md): core <- sched <- {sim, server}; agent, store and
# autoscale depend on core only; the CLI on everything. It is enforced by include paths: src/
# is on no target's path. Instead each library gets its own folder in the build tree holding one
# symbolic link, named like its layer (`core`, `sched`, `sim/replay`, ...), to its sources,
# and that folder is a PUBLIC include directory of the library. A target therefore sees its
# own layer and, through CMake's usage requirements, exactly the layers of the libraries it
# links, with the usual `#include "core/x.h"` spelling. Anything else is "No such file".
# tests/layering proves it by compiling includes that must fail.
#
# gpuorch_layer(target path) exposes src/<path> to `target` and to whatever links it.
function(gpuorch_layer target path)
  set(dir ${CMAKE_BINARY_DIR}/include/${target})
  get_filename_component(parent ${dir}/${path} DIRECTORY)
  file(MAKE_DIRECTORY ${parent})
  file(CREATE_LINK ${CMAKE_SOURCE_DIR}/src/${path} ${dir}/${path} SYMBOLIC)
  target_include_directories(${target} PUBLIC ${dir})
endfunction()
